//! Node placement from ONNX Runtime's profile (`--profile`): which execution provider ran each
//! graph node and how much kernel time each provider took. This is the proof that a CUDA run
//! computes on the GPU, and it names the ops (and nodes) that ONNX Runtime kept on the CPU.

use crate::error::{Error, IoContext, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One provider's share of the profiled runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderShare {
    /// ONNX Runtime's name, e.g. `CUDAExecutionProvider`.
    pub provider: String,
    /// Distinct graph nodes it ran.
    pub nodes: usize,
    /// Summed kernel time over all runs, microseconds (host-side time for asynchronous kernels).
    pub kernel_us: u64,
    /// Op types it ran, with their node counts.
    pub ops: BTreeMap<String, usize>,
    /// Up to 8 node names, for the minority providers.
    pub example_nodes: Vec<String>,
}

/// One provider's node names, kernel time and nodes per op type, while reading.
type Tally = (BTreeSet<String>, u64, BTreeMap<String, BTreeSet<String>>);

/// Per-provider placement, largest kernel time first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Placement {
    pub providers: Vec<ProviderShare>,
}

impl Placement {
    /// Reads an ONNX Runtime profile (a JSON list of trace events).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
            Error::Runtime(format!(
                "{}: not an ONNX Runtime profile: {e}",
                path.display()
            ))
        })?;
        Ok(Self::from_events(&events))
    }

    /// Groups the `Node` events that name a provider (ONNX Runtime's `*_kernel_time` events).
    pub fn from_events(events: &[serde_json::Value]) -> Self {
        let mut by: BTreeMap<String, Tally> = BTreeMap::new();
        for e in events {
            let args = &e["args"];
            let (Some(provider), Some(name)) = (args["provider"].as_str(), e["name"].as_str())
            else {
                continue;
            };
            let node = name
                .strip_suffix("_kernel_time")
                .unwrap_or(name)
                .to_string();
            let op = args["op_name"].as_str().unwrap_or("?").to_string();
            let entry = by.entry(provider.to_string()).or_default();
            entry.0.insert(node.clone());
            entry.1 += e["dur"].as_u64().unwrap_or(0);
            entry.2.entry(op).or_default().insert(node);
        }
        let mut providers: Vec<ProviderShare> = by
            .into_iter()
            .map(|(provider, (nodes, kernel_us, ops))| ProviderShare {
                provider,
                nodes: nodes.len(),
                kernel_us,
                ops: ops.into_iter().map(|(k, v)| (k, v.len())).collect(),
                example_nodes: nodes.into_iter().take(8).collect(),
            })
            .collect();
        providers.sort_by(|a, b| b.kernel_us.cmp(&a.kernel_us).then(b.nodes.cmp(&a.nodes)));
        Self { providers }
    }

    /// Nodes per provider.
    pub fn nodes_on(&self, provider: &str) -> usize {
        self.providers
            .iter()
            .find(|p| p.provider == provider)
            .map_or(0, |p| p.nodes)
    }

    /// One line per provider: nodes, share of kernel time, and (for all but the first) op types.
    pub fn report(&self) -> String {
        let total: u64 = self
            .providers
            .iter()
            .map(|p| p.kernel_us)
            .sum::<u64>()
            .max(1);
        let mut lines = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            let mut line = format!(
                "{}: {} nodes, {:.1} % of kernel time",
                p.provider,
                p.nodes,
                100.0 * p.kernel_us as f64 / total as f64
            );
            if i > 0 {
                let ops: Vec<String> = p.ops.iter().map(|(k, v)| format!("{k} x{v}")).collect();
                line.push_str(&format!(" (ops: {})", ops.join(", ")));
            }
            lines.push(line);
        }
        if lines.is_empty() {
            lines.push("the profile holds no node events (no run was profiled)".into());
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_nodes_by_provider_and_ignores_other_events() {
        let events = vec![
            json!({"cat": "Session", "name": "model_loading_uri", "dur": 100}),
            json!({"cat": "Node", "name": "mm_kernel_time", "dur": 30,
                   "args": {"op_name": "MatMul", "provider": "CUDAExecutionProvider"}}),
            json!({"cat": "Node", "name": "mm_kernel_time", "dur": 30,
                   "args": {"op_name": "MatMul", "provider": "CUDAExecutionProvider"}}),
            json!({"cat": "Node", "name": "shape_kernel_time", "dur": 1,
                   "args": {"op_name": "Shape", "provider": "CPUExecutionProvider"}}),
            json!({"cat": "Node", "name": "mm_fence_before", "dur": 0, "args": {"op_name": "MatMul"}}),
        ];
        let p = Placement::from_events(&events);
        assert_eq!(p.providers.len(), 2);
        assert_eq!(p.providers[0].provider, "CUDAExecutionProvider");
        assert_eq!((p.providers[0].nodes, p.providers[0].kernel_us), (1, 60));
        assert_eq!(p.nodes_on("CPUExecutionProvider"), 1);
        let r = p.report();
        assert!(
            r.contains("CPUExecutionProvider: 1 nodes") && r.contains("Shape x1"),
            "{r}"
        );
    }
}
