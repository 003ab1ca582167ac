//! Walking every record of a tenant, heads only, page after page: what a
//! shred's removal and a re-encryption both do, each at its own pace (it
//! awaits its own writes between records).

use crate::{ReadOptions, Record, ScanQuery, ScanScope, ScanStream, StorageError, Store};

/// The heads of one tenant's records in key order, a chunk at a time.
pub(crate) struct TenantWalk {
    store: Store,
    tenant: String,
    pages: Option<ScanStream>,
    /// Where the next scan starts; `None` with no scan open: the walk ended.
    page_token: Option<Vec<u8>>,
    started: bool,
}

impl TenantWalk {
    pub(crate) fn new(store: &Store, tenant: &str) -> Self {
        Self {
            store: store.clone(),
            tenant: tenant.to_string(),
            pages: None,
            page_token: None,
            started: false,
        }
    }

    /// The next chunk of records (heads only), or `None` once every record
    /// was seen. A scan cut short is an error, never an early end.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Record>>, StorageError> {
        loop {
            if let Some(pages) = &mut self.pages {
                match pages.recv().await {
                    Some(page) => {
                        let page = page?;
                        self.page_token = page.next_page_token;
                        return Ok(Some(page.records));
                    }
                    None => self.pages = None,
                }
            }
            // A scan returns at most the read limit: the next one starts
            // where it stopped.
            if self.started && self.page_token.is_none() {
                return Ok(None);
            }
            self.started = true;
            let query = ScanQuery {
                scope: ScanScope::Tenant { major: self.tenant.clone() },
                limit: self.store.limits().max_read_limit,
                page_token: self.page_token.take(),
                read: ReadOptions { head_only: true, raw: false },
            };
            self.pages = Some(self.store.scan(query)?);
        }
    }
}
