//! Structural validation of a flattened device tree before it is parsed.
//!
//! Devicetree Specification v0.4, chapter 5 ("Flattened Devicetree (DTB)
//! Format"). The `fdt` crate trusts the structure block and panics on a
//! malformed one; this pass checks every token, length and string offset
//! first, so that a bad DTB becomes an error that names the problem.
//!
//! The grammar enforced is the one the `fdt` crate can walk, which is the
//! spec's canonical form: a node is `FDT_BEGIN_NODE name FDT_PROP*
//! node* FDT_END_NODE`, properties before subnodes, and `FDT_NOP` only right
//! before an `FDT_END_NODE` or `FDT_END`, or between two children of the root
//! (where libxl leaves them after editing the tree in place).

use core::fmt;

const MAGIC: u32 = 0xd00d_feed;
const HEADER_SIZE: usize = 40;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// Deepest node nesting accepted (the spec sets no limit; real trees use < 10).
const MAX_DEPTH: usize = 32;

/// What is wrong with a device tree blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtbError {
    /// Fewer bytes than the header, or than the header's `totalsize`.
    Truncated {
        /// Bytes available.
        available: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// The magic number is not 0xd00dfeed.
    BadMagic(u32),
    /// The format version is older than 16 or incompatible.
    UnsupportedVersion(u32),
    /// A block (named) lies outside `totalsize` or overlaps the header.
    BlockOutOfBounds(&'static str),
    /// The memory reservation map has no terminating entry.
    UnterminatedReservations,
    /// The structure block is malformed at a byte offset inside it.
    Structure {
        /// Offset within the structure block.
        offset: usize,
        /// What was found there.
        reason: &'static str,
    },
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DtbError::Truncated { available, needed } => write!(
                f,
                "device tree is truncated: {available} bytes present, {needed} needed"
            ),
            DtbError::BadMagic(magic) => {
                write!(f, "device tree magic is {magic:#010x}, expected 0xd00dfeed")
            }
            DtbError::UnsupportedVersion(version) => {
                write!(f, "device tree format version {version} is not supported")
            }
            DtbError::BlockOutOfBounds(block) => {
                write!(f, "device tree {block} lies outside the blob")
            }
            DtbError::UnterminatedReservations => {
                write!(f, "device tree memory reservation map has no end entry")
            }
            DtbError::Structure { offset, reason } => write!(
                f,
                "device tree structure block is malformed at offset {offset:#x}: {reason}"
            ),
        }
    }
}

fn be32(bytes: &[u8], offset: usize) -> Option<u32> {
    let word = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

fn be64(bytes: &[u8], offset: usize) -> Option<u64> {
    Some((u64::from(be32(bytes, offset)?) << 32) | u64::from(be32(bytes, offset + 4)?))
}

/// Reads `totalsize` from a header, for sizing a blob found in memory.
pub fn total_size(header: &[u8]) -> Result<usize, DtbError> {
    let magic = be32(header, 0).ok_or(DtbError::Truncated {
        available: header.len(),
        needed: 8,
    })?;
    if magic != MAGIC {
        return Err(DtbError::BadMagic(magic));
    }
    be32(header, 4)
        .map(|size| size as usize)
        .ok_or(DtbError::Truncated {
            available: header.len(),
            needed: 8,
        })
}

/// A memory reservation (`/memreserve/`) entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Start address.
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A blob that passed [`validate`]: its exact bytes and reservation map.
#[derive(Clone, Copy, Debug)]
pub struct CheckedDtb<'dt> {
    /// The blob, cut to `totalsize`.
    pub bytes: &'dt [u8],
    reservations_offset: usize,
}

impl<'dt> CheckedDtb<'dt> {
    /// The memory reservation entries, terminator excluded.
    pub fn reservations(&self) -> impl Iterator<Item = Reservation> + 'dt {
        let bytes = self.bytes;
        let start = self.reservations_offset;
        (0..)
            .map(move |index| {
                let offset = start + index * 16;
                Reservation {
                    address: be64(bytes, offset).unwrap_or(0),
                    size: be64(bytes, offset + 8).unwrap_or(0),
                }
            })
            .take_while(|entry| entry.address != 0 || entry.size != 0)
    }
}

fn structure_error(offset: usize, reason: &'static str) -> DtbError {
    DtbError::Structure { offset, reason }
}

/// Checks a string that starts at `offset` of `block`: NUL-terminated inside
/// the block and UTF-8. Returns its length without the NUL.
fn check_string(block: &[u8], offset: usize) -> Option<usize> {
    let rest = block.get(offset..)?;
    let length = rest.iter().position(|&byte| byte == 0)?;
    core::str::from_utf8(&rest[..length]).ok()?;
    Some(length)
}

fn align4(value: usize) -> Option<usize> {
    value.checked_add(3).map(|value| value & !3)
}

/// Validates the header, the reservation map and every token of the
/// structure block.
pub fn validate(blob: &[u8]) -> Result<CheckedDtb<'_>, DtbError> {
    if blob.len() < HEADER_SIZE {
        return Err(DtbError::Truncated {
            available: blob.len(),
            needed: HEADER_SIZE,
        });
    }
    let field = |index: usize| be32(blob, index * 4).unwrap_or(0) as usize;
    let magic = field(0) as u32;
    if magic != MAGIC {
        return Err(DtbError::BadMagic(magic));
    }
    let total = field(1);
    if total > blob.len() {
        return Err(DtbError::Truncated {
            available: blob.len(),
            needed: total,
        });
    }
    if total < HEADER_SIZE {
        return Err(DtbError::BlockOutOfBounds("header"));
    }
    let blob = &blob[..total];
    let (struct_offset, strings_offset, reservations_offset) = (field(2), field(3), field(4));
    let (version, last_compatible) = (field(5) as u32, field(6) as u32);
    let (strings_size, struct_size) = (field(8), field(9));
    if version < 16 || last_compatible > 17 {
        return Err(DtbError::UnsupportedVersion(version));
    }
    let block = |offset: usize, size: usize, name: &'static str| {
        offset
            .checked_add(size)
            .filter(|&end| offset >= HEADER_SIZE && end <= total)
            .map(|end| &blob[offset..end])
            .ok_or(DtbError::BlockOutOfBounds(name))
    };
    let structure = block(struct_offset, struct_size, "structure block")?;
    let strings = block(strings_offset, strings_size, "strings block")?;
    if reservations_offset < HEADER_SIZE || reservations_offset % 8 != 0 {
        return Err(DtbError::BlockOutOfBounds("memory reservation map"));
    }
    let mut entry = reservations_offset;
    loop {
        match (be64(blob, entry), be64(blob, entry + 8)) {
            (Some(0), Some(0)) => break,
            (Some(_), Some(_)) => entry += 16,
            _ => return Err(DtbError::UnterminatedReservations),
        }
    }
    check_structure(structure, strings)?;
    Ok(CheckedDtb {
        bytes: blob,
        reservations_offset,
    })
}

fn check_structure(structure: &[u8], strings: &[u8]) -> Result<(), DtbError> {
    let mut offset = 0;
    let mut depth = 0usize;
    let mut root_seen = false;
    // Whether the innermost open node has had a subnode yet (then no more
    // properties may follow).
    let mut subnode_seen = [false; MAX_DEPTH + 1];
    loop {
        let token = be32(structure, offset).ok_or(structure_error(offset, "missing FDT_END"))?;
        let token_offset = offset;
        offset += 4;
        match token {
            FDT_BEGIN_NODE => {
                if depth == 0 && root_seen {
                    return Err(structure_error(token_offset, "second root node"));
                }
                root_seen = true;
                subnode_seen[depth] = true;
                let length = check_string(structure, offset).ok_or(structure_error(
                    offset,
                    "node name not terminated or not UTF-8",
                ))?;
                if depth == 0 && length != 0 {
                    return Err(structure_error(offset, "root node has a name"));
                }
                offset = align4(offset + length + 1)
                    .ok_or(structure_error(offset, "node name overflows"))?;
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(structure_error(token_offset, "nodes nested too deeply"));
                }
                subnode_seen[depth] = false;
            }
            FDT_END_NODE => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(structure_error(token_offset, "FDT_END_NODE without a node"))?;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(structure_error(token_offset, "property outside any node"));
                }
                if subnode_seen[depth] {
                    return Err(structure_error(token_offset, "property after a subnode"));
                }
                let length = be32(structure, offset)
                    .ok_or(structure_error(offset, "property header truncated"))?
                    as usize;
                let name_offset = be32(structure, offset + 4)
                    .ok_or(structure_error(offset, "property header truncated"))?
                    as usize;
                let value = offset + 8;
                let end = value
                    .checked_add(length)
                    .filter(|&end| end <= structure.len())
                    .ok_or(structure_error(
                        token_offset,
                        "property value runs past the block",
                    ))?;
                let name_length = check_string(strings, name_offset).ok_or(structure_error(
                    token_offset,
                    "property name offset outside the strings block",
                ))?;
                let name = &strings[name_offset..name_offset + name_length];
                if (name == b"#address-cells" || name == b"#size-cells") && length != 4 {
                    return Err(structure_error(
                        token_offset,
                        "cell count property is not 4 bytes",
                    ));
                }
                offset = align4(end).ok_or(structure_error(token_offset, "property overflows"))?;
            }
            FDT_NOP => {
                let mut next = offset;
                while be32(structure, next) == Some(FDT_NOP) {
                    next += 4;
                }
                let between_root_children =
                    depth == 1 && subnode_seen[1] && be32(structure, next) == Some(FDT_BEGIN_NODE);
                if !between_root_children
                    && !matches!(be32(structure, next), Some(FDT_END_NODE | FDT_END))
                {
                    return Err(structure_error(
                        token_offset,
                        "FDT_NOP between properties or nodes",
                    ));
                }
            }
            FDT_END => {
                if depth != 0 || !root_seen {
                    return Err(structure_error(token_offset, "FDT_END inside a node"));
                }
                return Ok(());
            }
            _ => return Err(structure_error(token_offset, "unknown token")),
        }
    }
}
