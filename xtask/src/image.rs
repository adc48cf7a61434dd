//! ELF to arm64 `Image`: the raw binary xl and Xen load (Linux `Documentation/arm64/booting.rst`).
//!
//! Every `PT_LOAD` segment's file bytes land at `p_paddr - lowest p_paddr`; gaps are zero. The
//! result must start with the 64-byte arm64 Image header the guest's linker script puts first,
//! whose magic `ARM\x64` (0x644d5241, little endian) sits at offset 56.

use anyhow::{bail, ensure, Context, Result};
use object::elf::PT_LOAD;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::Endianness;

/// `ARM\x64` at offset 56 of the header, little endian.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Offset of the magic in the arm64 Image header.
pub const IMAGE_MAGIC_OFFSET: usize = 56;
/// Size of the arm64 Image header.
pub const IMAGE_HEADER_SIZE: usize = 64;
/// Refuse to write Images larger than this: loadable segments that far apart are a link error.
const MAX_IMAGE_SIZE: u64 = 64 << 20;

/// The fields of the arm64 Image header the rig reports.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// `text_offset` @8: load offset from a 2 MiB aligned base.
    pub text_offset: u64,
    /// `image_size` @16: effective image size including BSS.
    pub image_size: u64,
    /// `flags` @24.
    pub flags: u64,
}

/// Converts the guest ELF into a raw Image and checks its header.
pub fn elf_to_image(elf: &[u8]) -> Result<Vec<u8>> {
    let file = ElfFile64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    let endian = file.endian();
    let mut segments = Vec::new();
    for phdr in file.elf_program_headers() {
        if phdr.p_type(endian) != PT_LOAD || phdr.p_filesz(endian) == 0 {
            continue;
        }
        let data = phdr
            .data(endian, elf)
            .map_err(|_| anyhow::anyhow!("a PT_LOAD segment lies outside the file"))?;
        segments.push((phdr.p_paddr(endian), data));
    }
    let base = segments
        .iter()
        .map(|(paddr, _)| *paddr)
        .min()
        .context("the ELF file has no PT_LOAD segment with file contents")?;
    let end = segments
        .iter()
        .map(|(paddr, data)| paddr - base + data.len() as u64)
        .max()
        .unwrap_or(0);
    ensure!(
        end <= MAX_IMAGE_SIZE,
        "loadable segments span {end:#x} bytes (more than {MAX_IMAGE_SIZE:#x}): check the linker script"
    );
    let mut image = vec![0u8; end as usize];
    for (paddr, data) in segments {
        let start = (paddr - base) as usize;
        image[start..start + data.len()].copy_from_slice(data);
    }
    header(&image)?;
    Ok(image)
}

/// Reads and checks the arm64 Image header at the start of `image`.
pub fn header(image: &[u8]) -> Result<Header> {
    if image.len() < IMAGE_HEADER_SIZE {
        bail!(
            "the Image is {} bytes, shorter than the {IMAGE_HEADER_SIZE}-byte arm64 header",
            image.len()
        );
    }
    let word = |offset: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&image[offset..offset + 8]);
        u64::from_le_bytes(bytes)
    };
    let magic = u32::from_le_bytes([image[56], image[57], image[58], image[59]]);
    if magic != IMAGE_MAGIC {
        bail!(
            "no arm64 Image header: magic at offset {IMAGE_MAGIC_OFFSET} is {magic:#010x}, \
             expected {IMAGE_MAGIC:#010x} (\"ARM\\x64\"); the guest's first loadable bytes must be \
             the Image header (see link.ld)"
        );
    }
    Ok(Header {
        text_offset: word(8),
        image_size: word(16),
        flags: word(24),
    })
}

/// A minimal valid Image whose entry is `b .` (spins forever): enough for xl to build a domain,
/// e.g. to dump the device tree libxl generates before a real guest exists.
pub fn placeholder() -> Vec<u8> {
    let mut image = vec![0u8; IMAGE_HEADER_SIZE];
    // code0: `b .` (0x14000000).
    image[0..4].copy_from_slice(&0x1400_0000u32.to_le_bytes());
    // image_size: the header itself.
    image[16..24].copy_from_slice(&(IMAGE_HEADER_SIZE as u64).to_le_bytes());
    // flags: little endian, 4 KiB pages, anywhere in memory.
    image[24..32].copy_from_slice(&0b1010u64.to_le_bytes());
    image[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a little-endian ELF64 for aarch64 with one PT_LOAD per `(paddr, bytes)` and a
    /// zero-filled PT_LOAD (BSS) at the end.
    fn synthetic_elf(segments: &[(u64, &[u8])]) -> Vec<u8> {
        let phnum = segments.len() + 1;
        let data_start = 64 + 56 * phnum;
        let mut elf = vec![0u8; 64];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // ELFCLASS64
        elf[5] = 1; // ELFDATA2LSB
        elf[6] = 1; // EV_CURRENT
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut offset = data_start as u64;
        let mut phdr = |paddr: u64, offset: u64, filesz: u64, memsz: u64| {
            let mut ph = [0u8; 56];
            ph[0..4].copy_from_slice(&PT_LOAD.0.to_le_bytes());
            ph[4..8].copy_from_slice(&5u32.to_le_bytes());
            ph[8..16].copy_from_slice(&offset.to_le_bytes());
            ph[16..24].copy_from_slice(&(paddr + 0xffff_0000_0000_0000).to_le_bytes());
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&filesz.to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            ph[48..56].copy_from_slice(&4096u64.to_le_bytes());
            elf.extend_from_slice(&ph);
        };
        for (paddr, bytes) in segments {
            phdr(*paddr, offset, bytes.len() as u64, bytes.len() as u64);
            offset += bytes.len() as u64;
        }
        phdr(0x4100_0000, offset, 0, 0x1000);
        for (_, bytes) in segments {
            elf.extend_from_slice(bytes);
        }
        elf
    }

    #[test]
    fn segments_land_at_their_physical_offsets() {
        let head = placeholder();
        let elf = synthetic_elf(&[(0x4008_0000, &head), (0x4008_1000, b"DATA")]);
        let image = elf_to_image(&elf).unwrap();
        assert_eq!(image.len(), 0x1004);
        assert_eq!(&image[..64], &head[..]);
        assert!(image[64..0x1000].iter().all(|&b| b == 0));
        assert_eq!(&image[0x1000..], b"DATA");
    }

    #[test]
    fn missing_magic_is_a_clear_error() {
        let elf = synthetic_elf(&[(0x4008_0000, &[0u8; 64])]);
        let error = elf_to_image(&elf).unwrap_err().to_string();
        assert!(error.contains("magic at offset 56"), "{error}");
    }

    #[test]
    fn placeholder_header_is_valid() {
        let header = header(&placeholder()).unwrap();
        assert_eq!(
            header,
            Header {
                text_offset: 0,
                image_size: 64,
                flags: 0b1010
            }
        );
    }

    #[test]
    fn not_an_elf_is_rejected() {
        assert!(elf_to_image(b"MZ not an ELF").is_err());
    }
}
