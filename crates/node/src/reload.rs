//! Files reloaded without a restart: the node's certificate, key and CA
//! bundle ([`CertificateReload`]) and its master key file
//! ([`crate::master_key::MasterKeyReload`]). Each is read again when told
//! to (SIGHUP) and when its files change: a poll of modification time,
//! inode and size, which also sees a Kubernetes `..data` symlink swap.
//!
//! A valid new certificate and key are used for every new connection, in
//! both servers and for dialing peers, while established connections
//! carry on; an invalid pair (unreadable, not a node's, another
//! cluster's, expired or not yet valid) keeps the current one, is
//! counted, and is logged saying why.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use consensusdb_pki::live::{FileStamp, stamp};
use consensusdb_pki::{LiveTls, TlsFiles};
use tokio::sync::Notify;

/// Runs `reload` whenever `trigger` fires, and whenever one of `files`
/// changes (looked at every `interval`; zero looks only when triggered).
/// Never returns: abort its task to stop it.
pub(crate) async fn on_change<F: Future<Output = ()>>(
    trigger: Arc<Notify>,
    interval: Duration,
    files: Vec<PathBuf>,
    mut reload: impl FnMut() -> F,
) {
    let mut seen = stamps(&files).await;
    loop {
        let forced = tokio::select! {
            () = trigger.notified() => true,
            () = tokio::time::sleep(interval), if !interval.is_zero() => false,
        };
        let now = stamps(&files).await;
        if !forced && now == seen {
            continue;
        }
        seen = now;
        reload().await;
    }
}

/// The stamps of `files`, read on the blocking pool.
async fn stamps(files: &[PathBuf]) -> Vec<FileStamp> {
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || files.iter().map(|path| stamp(path)).collect())
        .await
        .unwrap_or_default()
}

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
        let files =
            vec![self.files.ca_bundle.clone(), self.files.certificate.clone(), self.files.key.clone()];
        on_change(self.trigger.clone(), self.interval, files, || self.reload()).await;
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
