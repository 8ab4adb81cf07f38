//! A small dependency queue, after cargo's `dependency_queue`: nodes are queued with the
//! nodes they wait for, `dequeue` hands out nodes whose dependencies have all finished,
//! `finish` marks a node done. Among ready nodes, the one heading the longest chain of
//! expected work goes first (a node's weight is how long it is expected to take; the
//! database, minutes of RDS, before a subnet), then the one with the most nodes waiting
//! behind it, so long chains (instances -> target groups -> listeners) start early.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dependency cycle: {}", .0.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" -> "))]
pub struct Cycle(pub Vec<String>);

#[derive(Debug)]
pub struct DependencyQueue<K: Ord + Clone + Debug> {
    /// node -> nodes it still waits for
    waiting: BTreeMap<K, BTreeSet<K>>,
    /// node -> nodes that wait for it
    dependents: BTreeMap<K, BTreeSet<K>>,
    /// node -> its expected duration (any unit; 0 unless given)
    weight: BTreeMap<K, u64>,
    /// node -> (longest chain of weights from it to the end, number of nodes transitively
    /// waiting for it): the scheduling priority
    priority: BTreeMap<K, (u64, usize)>,
}

impl<K: Ord + Clone + Debug> Default for DependencyQueue<K> {
    fn default() -> Self {
        Self {
            waiting: BTreeMap::new(),
            dependents: BTreeMap::new(),
            weight: BTreeMap::new(),
            priority: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone + Debug> DependencyQueue<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `node`, which may start only after every node in `deps` finished. Dependencies
    /// that are never queued are treated as already finished.
    pub fn queue(&mut self, node: K, deps: impl IntoIterator<Item = K>) {
        self.queue_weighted(node, deps, 0);
    }

    /// [`queue`](Self::queue) a node expected to take `weight` (seconds, say): among ready
    /// nodes, those heading the heaviest chains go first.
    pub fn queue_weighted(&mut self, node: K, deps: impl IntoIterator<Item = K>, weight: u64) {
        let deps: BTreeSet<K> = deps.into_iter().filter(|d| d != &node).collect();
        self.dependents.entry(node.clone()).or_default();
        self.weight.insert(node.clone(), weight);
        self.waiting.insert(node, deps);
    }

    /// What each queued node waits for (after [`queue_finished`](Self::queue_finished):
    /// known nodes only). Dequeued nodes are not listed.
    pub fn dependencies(&self) -> &BTreeMap<K, BTreeSet<K>> {
        &self.waiting
    }

    /// Close the queue: drop unknown dependencies, check for cycles, compute priorities.
    pub fn queue_finished(&mut self) -> Result<(), Cycle> {
        let known: BTreeSet<K> = self.waiting.keys().cloned().collect();
        for deps in self.waiting.values_mut() {
            deps.retain(|d| known.contains(d));
        }
        self.dependents = known.iter().map(|k| (k.clone(), BTreeSet::new())).collect();
        for (node, deps) in &self.waiting {
            for d in deps {
                self.dependents
                    .get_mut(d)
                    .expect("known")
                    .insert(node.clone());
            }
        }
        self.check_cycles()?;
        // Longest weighted chain from each node, dependents first (reverse topological).
        let mut chain: BTreeMap<K, u64> = BTreeMap::new();
        let topo = {
            let mut left: BTreeMap<&K, usize> =
                self.waiting.iter().map(|(k, d)| (k, d.len())).collect();
            let mut ready: Vec<&K> = left
                .iter()
                .filter(|(_, n)| **n == 0)
                .map(|(k, _)| *k)
                .collect();
            let mut out = Vec::new();
            while let Some(n) = ready.pop() {
                out.push(n);
                for d in &self.dependents[n] {
                    let c = left.get_mut(d).expect("known");
                    *c -= 1;
                    if *c == 0 {
                        ready.push(d);
                    }
                }
            }
            out
        };
        for n in topo.iter().rev() {
            let after = self.dependents[*n]
                .iter()
                .map(|d| chain[d])
                .max()
                .unwrap_or(0);
            let own = self.weight.get(*n).copied().unwrap_or(0);
            chain.insert((*n).clone(), own + after);
        }
        self.priority = known
            .iter()
            .map(|k| {
                let mut seen = BTreeSet::new();
                let mut stack = vec![k.clone()];
                while let Some(n) = stack.pop() {
                    for d in &self.dependents[&n] {
                        if seen.insert(d.clone()) {
                            stack.push(d.clone());
                        }
                    }
                }
                (k.clone(), (chain[k], seen.len()))
            })
            .collect();
        Ok(())
    }

    fn check_cycles(&self) -> Result<(), Cycle> {
        // Iterative DFS with colours; report the first cycle found, in order.
        #[derive(Clone, Copy, PartialEq)]
        enum Colour {
            White,
            Grey,
            Black,
        }
        let mut colour: BTreeMap<&K, Colour> =
            self.waiting.keys().map(|k| (k, Colour::White)).collect();
        for start in self.waiting.keys() {
            if colour[start] != Colour::White {
                continue;
            }
            let mut path: Vec<&K> = vec![start];
            let mut iters: Vec<std::collections::btree_set::Iter<'_, K>> =
                vec![self.waiting[start].iter()];
            colour.insert(start, Colour::Grey);
            while let Some(it) = iters.last_mut() {
                match it.next() {
                    Some(next) => match colour[next] {
                        Colour::White => {
                            colour.insert(next, Colour::Grey);
                            path.push(next);
                            iters.push(self.waiting[next].iter());
                        }
                        Colour::Grey => {
                            let pos = path.iter().position(|p| *p == next).expect("on path");
                            let mut cycle: Vec<String> =
                                path[pos..].iter().map(|k| format!("{k:?}")).collect();
                            cycle.push(format!("{next:?}"));
                            return Err(Cycle(cycle));
                        }
                        Colour::Black => {}
                    },
                    None => {
                        let done = path.pop().expect("path");
                        colour.insert(done, Colour::Black);
                        iters.pop();
                    }
                }
            }
        }
        Ok(())
    }

    /// A node whose dependencies have all finished, highest priority first. The node is
    /// taken out of the queue.
    pub fn dequeue(&mut self) -> Option<K> {
        let next = self
            .waiting
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .max_by(|a, b| {
                self.priority
                    .get(a.0)
                    .cmp(&self.priority.get(b.0))
                    .then_with(|| b.0.cmp(a.0))
            })
            .map(|(k, _)| k.clone())?;
        self.waiting.remove(&next);
        Some(next)
    }

    /// Mark `node` finished: its dependents stop waiting for it.
    pub fn finish(&mut self, node: &K) {
        if let Some(dependents) = self.dependents.get(node) {
            for d in dependents {
                if let Some(deps) = self.waiting.get_mut(d) {
                    deps.remove(node);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Nodes still queued (not dequeued), for reporting what was skipped.
    pub fn remaining(&self) -> Vec<K> {
        self.waiting.keys().cloned().collect()
    }

    /// Topological order of all queued nodes (consumes nothing).
    pub fn order(&self) -> Vec<K> {
        let mut q = Self {
            waiting: self.waiting.clone(),
            dependents: self.dependents.clone(),
            weight: self.weight.clone(),
            priority: self.priority.clone(),
        };
        let mut out = Vec::new();
        while let Some(n) = q.dequeue() {
            q.finish(&n);
            out.push(n);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequeues_in_dependency_order() {
        let mut q = DependencyQueue::new();
        q.queue("subnet", ["vpc"]);
        q.queue("vpc", []);
        q.queue("node", ["subnet", "sg"]);
        q.queue("sg", ["vpc"]);
        q.queue_finished().unwrap();
        assert_eq!(q.dequeue(), Some("vpc"));
        assert_eq!(
            q.dequeue(),
            None,
            "nothing else is ready until vpc finishes"
        );
        q.finish(&"vpc");
        let mut ready = vec![q.dequeue().unwrap(), q.dequeue().unwrap()];
        ready.sort();
        assert_eq!(ready, vec!["sg", "subnet"]);
        assert_eq!(q.dequeue(), None);
        q.finish(&"sg");
        assert_eq!(q.dequeue(), None, "node still waits for subnet");
        q.finish(&"subnet");
        assert_eq!(q.dequeue(), Some("node"));
        assert!(q.is_empty());
    }

    #[test]
    fn higher_downstream_cost_goes_first() {
        let mut q = DependencyQueue::new();
        q.queue("leaf", []);
        q.queue("root", []);
        q.queue("a", ["root"]);
        q.queue("b", ["a"]);
        q.queue_finished().unwrap();
        assert_eq!(q.dequeue(), Some("root"));
        assert_eq!(q.dequeue(), Some("leaf"));
    }

    #[test]
    fn the_heaviest_chain_goes_first_whatever_the_number_of_dependents() {
        // A database (long) behind its subnet group, and nodes with many dependents.
        let mut q = DependencyQueue::new();
        q.queue_weighted("db-subnets", [], 1);
        q.queue_weighted("database", ["db-subnets"], 600);
        q.queue_weighted("node", [], 60);
        for tg in ["tg-80", "tg-443", "tg-6443"] {
            q.queue_weighted(tg, ["node"], 1);
        }
        q.queue_finished().unwrap();
        assert_eq!(q.dequeue(), Some("db-subnets"));
        assert_eq!(q.dequeue(), Some("node"));
        // Without weights the node, with more waiting behind it, would go first.
        let mut q = DependencyQueue::new();
        q.queue("db-subnets", []);
        q.queue("database", ["db-subnets"]);
        q.queue("node", []);
        for tg in ["tg-80", "tg-443", "tg-6443"] {
            q.queue(tg, ["node"]);
        }
        q.queue_finished().unwrap();
        assert_eq!(q.dequeue(), Some("node"));
    }

    #[test]
    fn unknown_dependencies_count_as_finished() {
        let mut q = DependencyQueue::new();
        q.queue("a", ["not-queued"]);
        q.queue_finished().unwrap();
        assert_eq!(q.dequeue(), Some("a"));
    }

    #[test]
    fn detects_cycles_and_names_them() {
        let mut q = DependencyQueue::new();
        q.queue("a", ["b"]);
        q.queue("b", ["c"]);
        q.queue("c", ["a"]);
        q.queue("d", []);
        let err = q.queue_finished().unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        assert_eq!(err.0.first(), err.0.last());
        assert!(err.to_string().contains("->"));
    }

    #[test]
    fn order_is_a_topological_sort() {
        let mut q = DependencyQueue::new();
        q.queue(3, [1, 2]);
        q.queue(2, [1]);
        q.queue(1, []);
        q.queue(4, [3]);
        q.queue_finished().unwrap();
        assert_eq!(q.order(), vec![1, 2, 3, 4]);
        assert_eq!(q.len(), 4, "order() does not consume");
    }
}
