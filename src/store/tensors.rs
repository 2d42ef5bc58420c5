//! Reading and writing float32 safetensors files (activation shards, probes, goldens), with
//! atomic writes and errors that name the file and the tensor.

use crate::error::{Error, IoContext, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// One named float32 tensor to write.
pub struct F32Tensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// A float32 tensor read back.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The one header metadata key this crate writes. safetensors serializes its metadata map in hash
/// order, so a single key (holding JSON) keeps files byte-identical across runs.
pub const METADATA_KEY: &str = "open_constitution";

/// Writes tensors (and a JSON metadata string) to `path` atomically. Tensor names are stored
/// sorted, so equal inputs give byte-identical files.
pub fn write_f32(path: &Path, tensors: &[F32Tensor<'_>], metadata: Option<String>) -> Result<()> {
    let mut bytes_per_tensor: Vec<(String, Vec<usize>, Vec<u8>)> =
        Vec::with_capacity(tensors.len());
    for t in tensors {
        let expected: usize = t.shape.iter().product();
        if expected != t.data.len() {
            return Err(Error::Store(format!(
                "{}: tensor `{}` has {} values for shape {:?}",
                path.display(),
                t.name,
                t.data.len(),
                t.shape
            )));
        }
        let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes_per_tensor.push((t.name.clone(), t.shape.clone(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes_per_tensor
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v))
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
    let meta: Option<HashMap<String, String>> =
        metadata.map(|m| HashMap::from([(METADATA_KEY.to_string(), m)]));
    let buf = safetensors::serialize(views, meta)
        .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
    crate::fsutil::write_atomic(path, |w| w.write_all(&buf))
}

/// sha256 of the tensors' data bytes (little-endian f32), in name order: what a file written by
/// [`write_f32`] gives for [`TensorFile::data_sha256`].
pub fn data_sha256(tensors: &[F32Tensor<'_>]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&F32Tensor<'_>> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    let mut buf = Vec::with_capacity(4 << 12);
    for t in sorted {
        for chunk in t.data.chunks(1 << 12) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&buf);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A safetensors file loaded in memory.
pub struct TensorFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    /// Reads the whole file.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).at(path)?;
        SafeTensors::deserialize(&bytes).map_err(|source| Error::Safetensors {
            path: path.to_path_buf(),
            context: "not a valid safetensors file; delete it and rerun the step that wrote it"
                .into(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
        })
    }

    fn parsed(&self) -> SafeTensors<'_> {
        // Validated in `open`.
        SafeTensors::deserialize(&self.bytes).expect("validated on open")
    }

    /// Names of the tensors in the file, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self
            .parsed()
            .names()
            .into_iter()
            .map(str::to_string)
            .collect();
        n.sort();
        n
    }

    /// sha256 of the tensors' raw data bytes, in name order (see [`data_sha256`]).
    pub fn data_sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let st = self.parsed();
        let mut h = Sha256::new();
        for name in self.names() {
            h.update(st.tensor(&name).expect("listed").data());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The metadata string written by [`write_f32`], if any.
    pub fn metadata(&self) -> Option<String> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).expect("validated on open");
        meta.metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY).cloned())
    }

    /// Reads tensor `name` as float32 (float16 and bfloat16 are widened).
    pub fn f32(&self, name: &str) -> Result<OwnedTensor> {
        let st = self.parsed();
        let view = st.tensor(name).map_err(|_| {
            Error::Store(format!(
                "{}: no tensor `{name}` (has: {})",
                self.path.display(),
                self.names().join(", ")
            ))
        })?;
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::Store(format!(
                    "{}: tensor `{name}` has dtype {other:?}, expected a float type",
                    self.path.display()
                )))
            }
        };
        Ok(OwnedTensor {
            shape: view.shape().to_vec(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let t = |n: &str| F32Tensor {
            name: n.into(),
            shape: vec![2, 3],
            data: &a,
        };
        let meta = r#"{"k":"v"}"#.to_string();
        let p1 = dir.path().join("a.safetensors");
        let p2 = dir.path().join("b.safetensors");
        write_f32(&p1, &[t("x"), t("w")], Some(meta.clone())).unwrap();
        write_f32(&p2, &[t("w"), t("x")], Some(meta)).unwrap();
        assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
        let f = TensorFile::open(&p1).unwrap();
        assert_eq!(f.names(), vec!["w", "x"]);
        assert_eq!(f.metadata().unwrap(), r#"{"k":"v"}"#);
        assert_eq!(f.f32("x").unwrap().data, a.to_vec());
        let err = f.f32("nope").err().unwrap().to_string();
        assert!(
            err.contains("no tensor `nope`") && err.contains("w, x"),
            "{err}"
        );
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = F32Tensor {
            name: "x".into(),
            shape: vec![4],
            data: &[1.0, 2.0],
        };
        assert!(write_f32(&dir.path().join("x"), &[bad], None).is_err());
    }
}
