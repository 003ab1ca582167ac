//! Certificate reload without restart: the node's certificate, key and CA
//! bundle are read again when told to (SIGHUP) and when their files change
//! (a poll of modification time, inode and size, which also sees a
//! Kubernetes `..data` symlink swap). A valid new pair is used for every
//! new connection, in both servers and for dialing peers, while
//! established connections carry on; an invalid one (unreadable, not a
//! node's, another cluster's, expired or not yet valid) keeps the current
//! pair, is counted, and is logged saying why.

use std::sync::Arc;
use std::time::Duration;

use consensusdb_pki::live::{FileStamp, stamps};
use consensusdb_pki::{LiveTls, TlsFiles};
use tokio::sync::Notify;

/// Watches a node's certificate files and reloads them.
pub struct CertificateReload {
    files: TlsFiles,
    tls: LiveTls,
    /// Time between looks at the files; zero turns polling off.
    interval: Duration,
    trigger: Arc<Notify>,
}

impl CertificateReload {
    /// Reloads `files` into `tls`, looking at them every `interval`.
    pub fn new(files: TlsFiles, tls: LiveTls, interval: Duration) -> Self {
        Self { files, tls, interval, trigger: Arc::new(Notify::new()) }
    }

    /// What makes it reload now, whether the files changed or not.
    pub fn trigger(&self) -> Arc<Notify> {
        self.trigger.clone()
    }

    /// The TLS it replaces.
    pub fn live(&self) -> LiveTls {
        self.tls.clone()
    }

    /// Reloads on the trigger and when the files change, until aborted.
    pub async fn run(self) {
        let mut seen = self.stamps().await;
        loop {
            let forced = tokio::select! {
                () = self.trigger.notified() => true,
                () = tokio::time::sleep(self.interval), if !self.interval.is_zero() => false,
            };
            let now = self.stamps().await;
            if !forced && now == seen {
                continue;
            }
            seen = now;
            self.reload().await;
        }
    }

    async fn stamps(&self) -> [FileStamp; 3] {
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || stamps(&files)).await.unwrap_or_default()
    }

    async fn reload(&self) {
        let (files, tls) = (self.files.clone(), self.tls.clone());
        match tokio::task::spawn_blocking(move || tls.reload(&files)).await {
            Ok(Ok(loaded)) => tracing::info!(
                identity = %loaded.identity,
                certificate = %self.files.certificate.display(),
                not_after = %loaded.not_after,
                "reloaded the node certificate: new connections use it"
            ),
            Ok(Err(why)) => tracing::warn!(
                certificate = %self.files.certificate.display(),
                %why,
                "certificate reload refused: the current certificate stays in use"
            ),
            Err(error) => tracing::error!(%error, "certificate reload task failed"),
        }
    }
}
