-- CDRs name the dialplan route by its id (text), and the users on both
-- ends (the number dialled and the caller id shown may differ from them).
ALTER TABLE cdrs ADD COLUMN route TEXT;
ALTER TABLE cdrs ADD COLUMN caller_user TEXT;
ALTER TABLE cdrs ADD COLUMN callee_user TEXT;
