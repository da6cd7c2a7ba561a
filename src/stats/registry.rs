//! Where readers find every worker's counters, and the per-pool counters of the pools now
//! configured.
//!
//! Pools can change at a reload, so their counters cannot be fixed fields of `WorkerStats`. The
//! control thread asks [`Registry::generation`] for them when it builds a generation and hands
//! each worker its own `Arc<PoolStats>` per pool inside that generation: the data path only
//! ever touches the `Arc` it was given, never the list. The list changes only on the control
//! plane (start and reload) and is read by the metrics thread; the mutex around it is never
//! taken by a worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{PoolStats, WorkerStats};

/// One configured pool: its name and one block of counters per worker (by worker id).
#[derive(Debug, Clone)]
pub struct PoolEntry {
    pub name: String,
    pub workers: Vec<Arc<PoolStats>>,
}

#[derive(Debug)]
pub struct Registry {
    workers: Vec<Arc<WorkerStats>>,
    pools: Mutex<Vec<PoolEntry>>,
}

impl Registry {
    pub fn new(workers: usize) -> Registry {
        Registry {
            workers: (0..workers)
                .map(|_| Arc::new(WorkerStats::default()))
                .collect(),
            pools: Mutex::new(Vec::new()),
        }
    }

    /// Every worker's counters, by worker id.
    pub fn workers(&self) -> &[Arc<WorkerStats>] {
        &self.workers
    }

    /// The pool counters for a generation configuring `names` (in pool-index order): for each
    /// worker, one `Arc<PoolStats>` per pool, to hand to that worker with the generation. A
    /// pool already configured under the same name keeps its counters, so its series carry on
    /// across a reload; pools left out of the new generation leave the listing (connections of
    /// the old generation may still count into their blocks; that is never read again).
    pub fn generation(&self, names: &[&str]) -> Vec<Vec<Arc<PoolStats>>> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let mut old: HashMap<String, Vec<Arc<PoolStats>>> = pools
            .drain(..)
            .map(|entry| (entry.name, entry.workers))
            .collect();
        for name in names {
            if pools.iter().any(|p| p.name == *name) {
                continue; // a name twice: both indices share the block (same writer per worker)
            }
            let workers = old.remove(*name).unwrap_or_else(|| {
                (0..self.workers.len())
                    .map(|_| Arc::new(PoolStats::default()))
                    .collect()
            });
            pools.push(PoolEntry {
                name: name.to_string(),
                workers,
            });
        }
        (0..self.workers.len())
            .map(|w| {
                names
                    .iter()
                    .map(|name| {
                        // Every name was pushed just above.
                        let entry = pools.iter().find(|p| p.name == *name);
                        entry.map_or_else(Default::default, |p| p.workers[w].clone())
                    })
                    .collect()
            })
            .collect()
    }

    /// The pools now configured, for a reader.
    pub fn pools(&self) -> Vec<PoolEntry> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_the_counters_of_pools_that_stay() {
        let r = Registry::new(2);
        let first = r.generation(&["web", "api"]);
        assert_eq!((first.len(), first[0].len()), (2, 2));
        first[1][0].requests.add(5); // worker 1, pool "web"
        assert!(
            !Arc::ptr_eq(&first[0][0], &first[1][0]),
            "one block per worker"
        );

        let second = r.generation(&["api", "web", "shop"]);
        assert!(Arc::ptr_eq(&second[1][1], &first[1][0]), "web carried on");
        assert!(Arc::ptr_eq(&second[0][0], &first[0][1]), "api carried on");
        let names: Vec<String> = r.pools().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["api", "web", "shop"]);
        assert_eq!(r.pools()[1].workers[1].requests.get(), 5);

        r.generation(&["shop"]);
        let names: Vec<String> = r.pools().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["shop"]);
    }
}
