//! `consensusdb init` and `consensusdb cert` as an operator runs them:
//! the files they write, their modes, the identities inside, and their
//! refusals.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use consensusdb_pki::identity_of_pem;

const BINARY: &str = env!("CARGO_BIN_EXE_consensusdb");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BINARY).args(args).env_remove("CONSENSUSDB_SERVER").output().expect("runs")
}

fn identity(path: &Path) -> String {
    identity_of_pem(&std::fs::read_to_string(path).expect("reads")).expect("an identity").to_string()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("exists").permissions().mode() & 0o777
}

#[test]
fn init_makes_a_ca_a_node_and_an_admin_and_cert_issues_more_from_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("certs");
    let dir_arg = dir.to_str().unwrap();
    let output =
        run(&["init", "--dir", dir_arg, "--cluster-id", "prod", "--name", "n1", "--dns", "n1.db,localhost"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("cdb://prod/node/n1") && said.contains("consensusdb cert node"), "{said}");
    assert_eq!(identity(&dir.join("node-n1.pem")), "cdb://prod/node/n1");
    assert_eq!(identity(&dir.join("client-admin.pem")), "cdb://prod/client/admin");
    for key in ["ca.key", "node-n1.key", "client-admin.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key} is its owner's only");
    }

    let again = run(&["init", "--dir", dir_arg]);
    assert!(!again.status.success(), "a second init must not replace the CA nodes trust");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a CA"));

    let node = run(&["cert", "node", "--dir", dir_arg, "--name", "n2", "--ip", "10.0.0.2"]);
    assert!(node.status.success(), "{}", String::from_utf8_lossy(&node.stderr));
    assert_eq!(identity(&dir.join("node-n2.pem")), "cdb://prod/node/n2", "the cluster comes from the CA");
    let client = run(&["cert", "client", "--dir", dir_arg, "--name", "billing"]);
    assert!(client.status.success(), "{}", String::from_utf8_lossy(&client.stderr));
    assert_eq!(identity(&dir.join("client-billing.pem")), "cdb://prod/client/billing");
    assert_eq!(mode(&dir.join("client-billing.key")), 0o600);

    let twice = run(&["cert", "client", "--dir", dir_arg, "--name", "billing"]);
    assert!(String::from_utf8_lossy(&twice.stderr).contains("refusing to overwrite"), "{twice:?}");
    let bad = run(&["cert", "client", "--dir", dir_arg, "--name", "a/b"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("name: may hold only"), "{bad:?}");
    let days = run(&["cert", "client", "--dir", dir_arg, "--name", "x", "--days", "0"]);
    assert!(String::from_utf8_lossy(&days.stderr).contains("--days: must be between 1"), "{days:?}");
    let no_ca = run(&["cert", "client", "--dir", temp.path().join("none").to_str().unwrap(), "--name", "x"]);
    assert!(!no_ca.status.success());
    assert!(String::from_utf8_lossy(&no_ca.stderr).contains("ca.pem"), "names the missing file: {no_ca:?}");
}
