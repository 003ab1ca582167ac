//! The command line: the nemesis's targets, the node binary and the shape
//! of the load.

use std::path::PathBuf;

use clap::Parser;

/// A chaos soak of a three-node ConsensusDB cluster on loopback: writers on
/// every node, a nemesis (kill -9, partitions, skewed clocks, stalled
/// scans), then convergence and a check of every node against a model of
/// the acknowledged writes.
#[derive(Debug, Clone, Parser)]
#[command(name = "chaos", version)]
pub struct Args {
    /// Kill cycles (SIGKILL a random node, restart it) to run at least.
    #[arg(long, default_value_t = 50)]
    pub kills: u32,
    /// Partition cycles (cut a random set of links, heal) to run at least.
    #[arg(long, default_value_t = 20)]
    pub partitions: u32,
    /// The `consensusdb` binary [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Keep the scratch directory (data directories and node logs).
    #[arg(long)]
    pub keep: bool,
    /// Where the scratch directory goes [default: the system temp dir].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Writer tasks per node, each on its own connection.
    #[arg(long, default_value_t = 3)]
    pub writers: usize,
    /// Milliseconds each writer waits between two writes (keeps the two
    /// cores from saturating, so timing faults stay faults).
    #[arg(long, default_value_t = 10)]
    pub pause_ms: u64,
    /// Seed of the random choices [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Largest clock skew, in ms either way, a skewed restart gives a node
    /// (below the nodes' maximum clock offset of 500 ms).
    #[arg(long, default_value_t = 300)]
    pub max_skew_ms: i64,
}

impl Args {
    /// Checks what clap cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.writers == 0 {
            return Err("--writers must be at least 1".into());
        }
        if !(1..500).contains(&self.max_skew_ms) {
            return Err("--max-skew-ms must be from 1 to 499 (the nodes' maximum offset is 500 ms)".into());
        }
        Ok(())
    }

    /// The node binary: `--binary`, or `consensusdb` next to this executable.
    pub fn node_binary(&self) -> Result<PathBuf, String> {
        match &self.binary {
            Some(path) => Ok(path.clone()),
            None => std::env::current_exe()
                .map(|exe| exe.with_file_name("consensusdb"))
                .map_err(|e| format!("finding this executable: {e}")),
        }
    }
}
