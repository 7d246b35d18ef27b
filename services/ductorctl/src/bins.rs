//! Where the service binaries are: `DUCTOR_BIN_DIR` when set, else the
//! directory of the running `ductorctl` (binaries are installed side by side,
//! and `cargo build` puts them side by side in `target/<profile>/`).

use std::path::{Path, PathBuf};

use ductor_daemon::ServiceName;

/// A directory holding the ductor binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinDir(PathBuf);

/// A service binary is not where it should be.
#[derive(Debug, thiserror::Error)]
#[error(
    "{binary} not found in {dir} (build it with `cargo build --workspace --bins`, install it next to \
     ductorctl, or point DUCTOR_BIN_DIR at it)"
)]
pub struct MissingBinary {
    /// The binary name.
    pub binary: String,
    /// Where it was looked for.
    pub dir: String,
}

impl BinDir {
    /// `DUCTOR_BIN_DIR`, else the directory of the current executable.
    pub fn locate() -> std::io::Result<Self> {
        if let Some(dir) = std::env::var_os("DUCTOR_BIN_DIR").filter(|d| !d.is_empty()) {
            return Ok(Self(PathBuf::from(dir)));
        }
        let exe = std::env::current_exe()?;
        let dir = exe.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        Ok(Self(dir))
    }

    /// A fixed directory.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// The binary of `service`, checked to exist.
    pub fn service(&self, service: ServiceName) -> Result<PathBuf, MissingBinary> {
        self.binary(service.binary())
    }

    /// Any binary by name, checked to exist.
    pub fn binary(&self, name: &str) -> Result<PathBuf, MissingBinary> {
        let path = self.0.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(MissingBinary { binary: name.to_owned(), dir: self.0.display().to_string() })
        }
    }
}
