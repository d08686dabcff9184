//! Binary size, and whether a binary really is stripped: no `.symtab` and no
//! `.debug_*` sections, read from its ELF section headers.

use std::path::Path;

use anyhow::Context as _;

pub struct BinarySize {
    pub bytes: u64,
    /// `None` when the file is not a 64-bit little-endian ELF.
    pub stripped: Option<bool>,
}

pub fn measure(path: &Path) -> anyhow::Result<BinarySize> {
    let elf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let stripped = section_names(&elf).map(|names| !names.iter().any(|n| n == ".symtab" || n.starts_with(".debug")));
    Ok(BinarySize { bytes: elf.len() as u64, stripped })
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
