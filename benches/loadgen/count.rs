//! After a load: how many events the node holds, counted by scanning every
//! tenant (heads only), so a lost or duplicated write shows up as an error.

use std::time::Instant;

use crate::grpc::{self, Client};
use crate::report::CountMeasurement;
use crate::workload::{TENANTS, tenant_name};

/// Counts the stored events of every tenant, `concurrency` scans at a time,
/// and compares the total with `expected`.
pub async fn run(clients: &[Client], concurrency: usize, scan_limit: u32, expected: u64) -> CountMeasurement {
    let start = Instant::now();
    let scanners: Vec<_> = (0..concurrency.min(TENANTS))
        .map(|w| {
            let mut client = clients[w % clients.len()].clone();
            tokio::spawn(async move {
                let (mut stored, mut errors) = (0u64, 0u64);
                for tenant in (w..TENANTS).step_by(concurrency) {
                    match grpc::scan_tenant(&mut client, &tenant_name(tenant), scan_limit, true).await {
                        Ok(records) => stored += records,
                        Err(status) => {
                            eprintln!("count: scanning tenant {}: {status}", tenant_name(tenant));
                            errors += 1;
                        }
                    }
                }
                (stored, errors)
            })
        })
        .collect();
    let (mut stored, mut errors) = (0, 0);
    for scanner in scanners {
        match scanner.await {
            Ok((tenant_records, tenant_errors)) => {
                stored += tenant_records;
                errors += tenant_errors;
            }
            Err(panicked) => {
                eprintln!("count: a scanner task failed: {panicked}");
                errors += 1;
            }
        }
    }
    if stored != expected {
        eprintln!("count: the node holds {stored} events, the load wrote {expected}");
        errors += 1;
    }
    CountMeasurement { stored, expected, errors, wall_s: start.elapsed().as_secs_f64() }
}
