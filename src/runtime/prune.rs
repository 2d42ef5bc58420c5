//! Pruning the exported graph for extraction: keep only the nodes the requested hidden-state
//! outputs depend on. ONNX Runtime computes every node of a session whatever outputs a run asks
//! for, so a probe on layer 8 of 18 would otherwise pay for all 18 layers and the LM head.
//!
//! The model is edited at the protobuf wire level: graph entries (nodes, initializers, outputs,
//! value infos) are kept or dropped byte for byte and every other field is copied unchanged, so
//! no ONNX schema is needed and the weights are never decoded. Graph inputs are all kept (an
//! unused input is legal), so callers feed the same inputs as to the full graph.

use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};

/// What pruning kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneStats {
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub initializers_before: usize,
    pub initializers_after: usize,
}

/// One top-level field of a protobuf message: its number, the whole encoded field (tag
/// included) and, for length-delimited fields, the payload.
struct Field<'a> {
    number: u64,
    raw: &'a [u8],
    payload: &'a [u8],
}

fn bad(what: &str) -> Error {
    Error::Model(format!(
        "cannot prune the graph: malformed ONNX protobuf ({what})"
    ))
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad("varint too long"))
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Splits a message into its fields.
fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let tag = varint(buf, &mut pos)?;
        let (number, wire) = (tag >> 3, tag & 7);
        let payload = match wire {
            0 => {
                varint(buf, &mut pos)?;
                &buf[pos..pos]
            }
            1 => {
                pos += 8;
                &buf[pos.min(buf.len())..pos.min(buf.len())]
            }
            5 => {
                pos += 4;
                &buf[pos.min(buf.len())..pos.min(buf.len())]
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|&e| e <= buf.len());
                let end = end.ok_or_else(|| bad("field runs past the end"))?;
                let p = &buf[pos..end];
                pos = end;
                p
            }
            _ => return Err(bad("unsupported wire type")),
        };
        if pos > buf.len() {
            return Err(bad("truncated field"));
        }
        out.push(Field {
            number,
            raw: &buf[start..pos],
            payload,
        });
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|_| bad("name is not UTF-8"))
}

/// The string fields numbered `number` of a message.
fn strings(msg: &[u8], number: u64) -> Result<Vec<&str>> {
    fields(msg)?
        .into_iter()
        .filter(|f| f.number == number)
        .map(|f| text(f.payload))
        .collect()
}

// Field numbers of onnx.proto (ModelProto.graph; GraphProto.*; NodeProto.*; AttributeProto.*).
const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_INITIALIZER: u64 = 5;
const GRAPH_OUTPUT: u64 = 12;
const GRAPH_VALUE_INFO: u64 = 13;
const NODE_INPUT: u64 = 1;
const NODE_OUTPUT: u64 = 2;
const NODE_ATTRIBUTE: u64 = 5;
const ATTR_GRAPH: u64 = 6;
const ATTR_GRAPHS: u64 = 11;
const TENSOR_NAME: u64 = 8;
const VALUE_INFO_NAME: u64 = 1;

struct Node<'a> {
    inputs: Vec<&'a str>,
    outputs: Vec<&'a str>,
}

fn parse_node(payload: &[u8]) -> Result<Node<'_>> {
    for attr in fields(payload)?
        .iter()
        .filter(|f| f.number == NODE_ATTRIBUTE)
    {
        if fields(attr.payload)?
            .iter()
            .any(|f| f.number == ATTR_GRAPH || f.number == ATTR_GRAPHS)
        {
            // Subgraphs read outer-scope values by name; not worth analysing here.
            return Err(Error::Model("graph has control-flow subgraphs".into()));
        }
    }
    Ok(Node {
        inputs: strings(payload, NODE_INPUT)?,
        outputs: strings(payload, NODE_OUTPUT)?,
    })
}

/// Returns a model computing only `keep_outputs` (and what they need), or `None` when nothing
/// can be removed.
pub fn prune_model(model: &[u8], keep_outputs: &[&str]) -> Result<Option<(Vec<u8>, PruneStats)>> {
    let top = fields(model)?;
    let graph = top
        .iter()
        .find(|f| f.number == MODEL_GRAPH)
        .ok_or_else(|| bad("no graph"))?;
    let entries = fields(graph.payload)?;
    let nodes: Vec<(usize, Node<'_>)> = entries
        .iter()
        .enumerate()
        .filter(|(_, f)| f.number == GRAPH_NODE)
        .map(|(i, f)| parse_node(f.payload).map(|n| (i, n)))
        .collect::<Result<_>>()?;
    let producer: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(k, (_, n))| n.outputs.iter().map(move |o| (*o, k)))
        .collect();
    // Reverse reachability from the outputs to keep.
    let mut needed: HashSet<&str> = HashSet::new();
    let mut kept_nodes: HashSet<usize> = HashSet::new();
    let mut stack: Vec<&str> = keep_outputs.to_vec();
    while let Some(name) = stack.pop() {
        if !needed.insert(name) {
            continue;
        }
        if let Some(&k) = producer.get(name) {
            if kept_nodes.insert(k) {
                stack.extend(nodes[k].1.inputs.iter().filter(|i| !i.is_empty()));
            }
        }
    }
    let produced: HashSet<&str> = kept_nodes
        .iter()
        .flat_map(|&k| nodes[k].1.outputs.iter().copied())
        .collect();
    let node_entry: HashMap<usize, usize> = nodes
        .iter()
        .enumerate()
        .map(|(k, (i, _))| (*i, k))
        .collect();
    let mut stats = PruneStats {
        nodes_before: nodes.len(),
        nodes_after: kept_nodes.len(),
        initializers_before: 0,
        initializers_after: 0,
    };
    let mut new_graph = Vec::with_capacity(graph.payload.len());
    for (i, f) in entries.iter().enumerate() {
        let keep = match f.number {
            GRAPH_NODE => kept_nodes.contains(&node_entry[&i]),
            GRAPH_INITIALIZER => {
                stats.initializers_before += 1;
                let name = strings(f.payload, TENSOR_NAME)?;
                let k = name.first().is_some_and(|n| needed.contains(n));
                stats.initializers_after += usize::from(k);
                k
            }
            GRAPH_OUTPUT => strings(f.payload, VALUE_INFO_NAME)?
                .first()
                .is_some_and(|n| keep_outputs.contains(n)),
            GRAPH_VALUE_INFO => strings(f.payload, VALUE_INFO_NAME)?
                .first()
                .is_some_and(|n| produced.contains(n) || needed.contains(n)),
            _ => true,
        };
        if keep {
            new_graph.extend_from_slice(f.raw);
        }
    }
    if stats.nodes_after == stats.nodes_before {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(model.len() - graph.payload.len() + new_graph.len());
    for f in &top {
        if f.number == MODEL_GRAPH {
            put_varint((MODEL_GRAPH << 3) | 2, &mut out);
            put_varint(new_graph.len() as u64, &mut out);
            out.extend_from_slice(&new_graph);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    Ok(Some((out, stats)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, payload: &[u8], out: &mut Vec<u8>) {
        put_varint((number << 3) | 2, out);
        put_varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    fn node(inputs: &[&str], outputs: &[&str]) -> Vec<u8> {
        let mut n = Vec::new();
        for i in inputs {
            field(NODE_INPUT, i.as_bytes(), &mut n);
        }
        for o in outputs {
            field(NODE_OUTPUT, o.as_bytes(), &mut n);
        }
        n
    }

    fn named(number: u64, name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        field(number, name.as_bytes(), &mut v);
        v
    }

    /// x -> a -> b (output "b"), a -> c (output "c"); weight w feeds c only.
    fn model() -> Vec<u8> {
        let mut g = Vec::new();
        field(GRAPH_NODE, &node(&["x"], &["a"]), &mut g);
        field(GRAPH_NODE, &node(&["a"], &["b"]), &mut g);
        field(GRAPH_NODE, &node(&["a", "w"], &["c"]), &mut g);
        field(GRAPH_INITIALIZER, &named(TENSOR_NAME, "w"), &mut g);
        field(GRAPH_OUTPUT, &named(VALUE_INFO_NAME, "b"), &mut g);
        field(GRAPH_OUTPUT, &named(VALUE_INFO_NAME, "c"), &mut g);
        let mut m = Vec::new();
        put_varint(1 << 3, &mut m); // ir_version = 9 (varint field 1)
        put_varint(9, &mut m);
        field(MODEL_GRAPH, &g, &mut m);
        m
    }

    #[test]
    fn keeps_only_what_the_outputs_need() {
        let (pruned, stats) = prune_model(&model(), &["b"]).unwrap().unwrap();
        assert_eq!((stats.nodes_before, stats.nodes_after), (3, 2));
        assert_eq!(
            (stats.initializers_before, stats.initializers_after),
            (1, 0)
        );
        let top = fields(&pruned).unwrap();
        assert_eq!(top[0].raw, &[8, 9], "other fields copied unchanged");
        let g = fields(top[1].payload).unwrap();
        let outputs: Vec<&str> = g
            .iter()
            .filter(|f| f.number == GRAPH_OUTPUT)
            .map(|f| strings(f.payload, VALUE_INFO_NAME).unwrap()[0])
            .collect();
        assert_eq!(outputs, ["b"]);
        assert!(
            prune_model(&model(), &["b", "c"]).unwrap().is_none(),
            "nothing to remove"
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut m = model();
        m.truncate(m.len() - 3);
        assert!(prune_model(&m, &["b"]).is_err());
    }
}
