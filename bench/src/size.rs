//! Binary size, and whether a binary really is stripped: no `.symtab` and no
//! `.debug_*` sections, read from its ELF section headers. Also the size of
//! the Lambda deployment zip: cargo-lambda's `target/lambda/<name>/bootstrap.zip`
//! (`make lambda`) when it is there, otherwise the release binary zipped here
//! the way cargo-lambda does (one entry, `bootstrap`, mode 755, deflated).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub struct BinarySize {
    pub bytes: u64,
    /// `None` when the file is not a 64-bit little-endian ELF.
    pub stripped: Option<bool>,
    /// The ELF machine (`x86_64`, `aarch64`), if it is one (checked by the
    /// tests; the report shows the zip's).
    #[allow(dead_code)]
    pub arch: Option<&'static str>,
}

/// A deployment zip's size and where it came from.
pub struct ZipSize {
    pub bytes: u64,
    /// The architecture of the `bootstrap` inside.
    pub arch: Option<&'static str>,
    /// `true`: cargo-lambda's zip; `false`: zipped here from the release binary.
    pub from_cargo_lambda: bool,
}

pub fn measure(path: &Path) -> anyhow::Result<BinarySize> {
    let elf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(of_elf(&elf))
}

fn of_elf(elf: &[u8]) -> BinarySize {
    let stripped = section_names(elf).map(|names| !names.iter().any(|n| n == ".symtab" || n.starts_with(".debug")));
    BinarySize { bytes: elf.len() as u64, stripped, arch: machine(elf) }
}

/// The zip of function `name`: `lambda_dir/<name>/bootstrap.zip` if cargo-lambda
/// left one, else `binary` zipped as `bootstrap` in memory.
pub fn zipped(name: &str, binary: &Path, lambda_dir: &Path) -> anyhow::Result<ZipSize> {
    let built: PathBuf = lambda_dir.join(name).join("bootstrap.zip");
    if built.exists() {
        let bytes = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
        let arch = bootstrap_of(&bytes).ok().and_then(|elf| machine(&elf));
        return Ok(ZipSize { bytes: bytes.len() as u64, arch, from_cargo_lambda: true });
    }
    let elf = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    Ok(ZipSize { bytes: zip_bootstrap(&elf)?.len() as u64, arch: machine(&elf), from_cargo_lambda: false })
}

/// `elf` as the single entry `bootstrap` (executable) of a deflated zip.
pub fn zip_bootstrap(elf: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).unix_permissions(0o755);
    zip.start_file("bootstrap", options)?;
    zip.write_all(elf)?;
    Ok(zip.finish()?.into_inner())
}

fn bootstrap_of(zip_bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes))?;
    let mut entry = archive.by_name("bootstrap")?;
    let mut elf = Vec::new();
    std::io::copy(&mut entry, &mut elf)?;
    Ok(elf)
}

/// `e_machine` of an ELF file.
fn machine(elf: &[u8]) -> Option<&'static str> {
    if elf.get(..4)? != b"\x7fELF" {
        return None;
    }
    match u16::from_le_bytes([*elf.get(0x12)?, *elf.get(0x13)?]) {
        0x3e => Some("x86_64"),
        0xb7 => Some("aarch64"),
        _ => Some("other"),
    }
}

/// The section names of an ELF64 little-endian file (x86_64 and aarch64
/// Linux), or `None` if it is not one or is malformed.
fn section_names(elf: &[u8]) -> Option<Vec<String>> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let field = |at: usize, len: usize| -> Option<usize> {
        let bytes = elf.get(at..at.checked_add(len)?)?;
        Some(bytes.iter().rev().fold(0usize, |acc, &b| (acc << 8) | b as usize))
    };
    let (shoff, shentsize, shnum, shstrndx) = (field(0x28, 8)?, field(0x3a, 2)?, field(0x3c, 2)?, field(0x3e, 2)?);
    let header = |i: usize| shoff + i * shentsize;
    let strtab = field(header(shstrndx) + 0x18, 8)?;
    (0..shnum)
        .map(|i| {
            let start = strtab + field(header(i), 4)?;
            let len = elf.get(start..)?.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&elf[start..start + len]).into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zips_a_binary_as_bootstrap() {
        // The head of this test binary: a real ELF header, quick to deflate.
        let mut elf = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        elf.truncate(256 * 1024);
        let zip = zip_bootstrap(&elf).unwrap();
        assert!(zip.len() < elf.len());
        assert_eq!(bootstrap_of(&zip).unwrap(), elf);
        assert_eq!(of_elf(&elf).arch, Some(std::env::consts::ARCH));
    }
}
