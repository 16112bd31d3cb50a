//! The in-memory directory of accounts and users the SIP path reads.
//!
//! Every REGISTER needs the account of its domain and the user's HA1; a
//! database round trip per request would cap the registrar far below what
//! phones send. The directory is loaded from the store at start-up and kept
//! current by the REST API, which writes the store first and then the
//! directory (write-through), so the hot path is a read lock and two hash
//! lookups.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use switchboard_sip::digest::Algorithm;
use switchboard_store::{Account, Store, User};

/// What authentication needs to know about a user.
#[derive(Debug, Clone)]
pub struct UserEntry {
    pub id: i64,
    pub account_id: i64,
    pub username: Box<str>,
    pub extension: Option<Box<str>>,
    pub display_name: Option<Box<str>>,
    pub ha1_md5: Box<str>,
    pub ha1_sha256: Box<str>,
    pub enabled: bool,
}

impl UserEntry {
    /// The stored HA1 for an algorithm.
    pub fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

impl From<&User> for UserEntry {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            account_id: u.account_id,
            username: u.username.as_str().into(),
            extension: u.extension.as_deref().map(Box::from),
            display_name: u.display_name.as_deref().map(Box::from),
            ha1_md5: u.ha1_md5.as_str().into(),
            ha1_sha256: u.ha1_sha256.as_str().into(),
            enabled: u.enabled,
        }
    }
}

/// The account fields the SIP path needs.
#[derive(Debug, Clone)]
pub struct AccountEntry {
    pub id: i64,
    pub name: String,
    pub domain: Option<String>,
    /// The digest realm: the account's domain, or the server realm.
    pub realm: String,
    pub max_concurrent_calls: i64,
    /// The account's SRTP setting; `Required` makes every route require it
    /// of the account's phones.
    pub srtp: crate::dialplan::Srtp,
}

#[derive(Default)]
struct Index {
    accounts: HashMap<i64, Arc<AccountEntry>>,
    by_domain: HashMap<String, i64>,
    default_account: Option<i64>,
    users: HashMap<(i64, Box<str>), Arc<UserEntry>>,
    by_id: HashMap<i64, Arc<UserEntry>>,
    by_extension: HashMap<(i64, Box<str>), Arc<UserEntry>>,
}

/// Accounts and users, indexed for the SIP path.
pub struct Directory {
    server_realm: String,
    index: RwLock<Index>,
}

impl Directory {
    pub fn new(server_realm: String) -> Self {
        Self {
            server_realm,
            index: RwLock::new(Index::default()),
        }
    }

    /// Replaces the whole directory with the store's content.
    ///
    /// # Errors
    /// A store failure; the old content stays.
    pub async fn load(&self, store: &Store) -> switchboard_store::Result<(usize, usize)> {
        let accounts = store.list_accounts().await?;
        let users = store.list_users(None).await?;
        let mut index = Index::default();
        for a in &accounts {
            self.insert_account(&mut index, a);
        }
        for u in &users {
            insert_user(&mut index, u);
        }
        let counts = (index.accounts.len(), index.users.len());
        if let Ok(mut guard) = self.index.write() {
            *guard = index;
        }
        Ok(counts)
    }

    /// The realm users of `account` authenticate in.
    pub fn realm_for(&self, account: &Account) -> String {
        account
            .domain
            .clone()
            .unwrap_or_else(|| self.server_realm.clone())
    }

    fn insert_account(&self, index: &mut Index, a: &Account) {
        if let Some(old) = index.accounts.get(&a.id)
            && let Some(d) = &old.domain
        {
            index.by_domain.remove(d);
        }
        let entry = Arc::new(AccountEntry {
            id: a.id,
            name: a.name.clone(),
            domain: a.domain.clone(),
            realm: self.realm_for(a),
            max_concurrent_calls: a.max_concurrent_calls,
            srtp: if a.srtp == "required" {
                crate::dialplan::Srtp::Required
            } else {
                crate::dialplan::Srtp::Optional
            },
        });
        match &a.domain {
            Some(d) => {
                index.by_domain.insert(d.to_ascii_lowercase(), a.id);
            }
            None => {
                if a.name == "default" || index.default_account.is_none() {
                    index.default_account = Some(a.id);
                }
            }
        }
        index.accounts.insert(a.id, entry);
    }

    pub fn upsert_account(&self, a: &Account) {
        if let Ok(mut index) = self.index.write() {
            self.insert_account(&mut index, a);
        }
    }

    pub fn remove_account(&self, id: i64) {
        if let Ok(mut index) = self.index.write() {
            if let Some(a) = index.accounts.remove(&id)
                && let Some(d) = &a.domain
            {
                index.by_domain.remove(d);
            }
            index.users.retain(|(acc, _), _| *acc != id);
            index.by_extension.retain(|(acc, _), _| *acc != id);
            index.by_id.retain(|_, u| u.account_id != id);
        }
    }

    pub fn upsert_user(&self, u: &User) {
        if let Ok(mut index) = self.index.write() {
            remove_user_locked(&mut index, u.id);
            insert_user(&mut index, u);
        }
    }

    pub fn remove_user(&self, id: i64) {
        if let Ok(mut index) = self.index.write() {
            remove_user_locked(&mut index, id);
        }
    }

    /// The account serving `domain`: the one claiming it, else the default.
    pub fn account_for_domain(&self, domain: &str) -> Option<Arc<AccountEntry>> {
        let index = self.index.read().ok()?;
        let id = index
            .by_domain
            .get(&domain.to_ascii_lowercase())
            .copied()
            .or(index.default_account)?;
        index.accounts.get(&id).cloned()
    }

    pub fn account(&self, id: i64) -> Option<Arc<AccountEntry>> {
        self.index.read().ok()?.accounts.get(&id).cloned()
    }

    /// A user by username within an account.
    pub fn user(&self, account_id: i64, username: &str) -> Option<Arc<UserEntry>> {
        let index = self.index.read().ok()?;
        index.users.get(&(account_id, username.into())).cloned()
    }

    /// A user by extension within an account.
    pub fn user_by_extension(&self, account_id: i64, ext: &str) -> Option<Arc<UserEntry>> {
        let index = self.index.read().ok()?;
        index.by_extension.get(&(account_id, ext.into())).cloned()
    }

    pub fn user_count(&self) -> usize {
        self.index.read().map(|i| i.users.len()).unwrap_or(0)
    }
}

fn insert_user(index: &mut Index, u: &User) {
    let entry = Arc::new(UserEntry::from(u));
    if let Some(ext) = &u.extension {
        index
            .by_extension
            .insert((u.account_id, ext.as_str().into()), entry.clone());
    }
    index.by_id.insert(u.id, entry.clone());
    index
        .users
        .insert((u.account_id, u.username.as_str().into()), entry);
}

/// Removes by id in O(1): the API creates users one at a time, and a scan
/// per insert would make loading 100,000 users quadratic.
fn remove_user_locked(index: &mut Index, id: i64) {
    if let Some(old) = index.by_id.remove(&id) {
        index.users.remove(&(old.account_id, old.username.clone()));
        if let Some(ext) = &old.extension {
            index.by_extension.remove(&(old.account_id, ext.clone()));
        }
    }
}
