-- An account's SRTP setting (SDES, RFC 4568): 'optional' (the default: a
-- caller offering SRTP gets SRTP, a plain caller plain RTP) or 'required'
-- (a call from the account offering plain RTP gets 488). Same meaning in
-- both backends' 0006 migration.
ALTER TABLE accounts ADD COLUMN srtp TEXT NOT NULL DEFAULT 'optional'
    CHECK (srtp IN ('optional', 'required'));
