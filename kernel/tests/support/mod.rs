//! A minimal flattened-device-tree writer for tests (Devicetree Specification
//! v0.4, chapter 5), independent of the parser under test, and a guest tree
//! shaped like the ones libxl generates.

#![allow(dead_code)]

/// Builds a DTB token by token.
#[derive(Default)]
pub struct FdtBuilder {
    structure: Vec<u8>,
    strings: Vec<u8>,
    reservations: Vec<(u64, u64)>,
}

impl FdtBuilder {
    pub fn begin(&mut self, name: &str) -> &mut Self {
        self.token(1);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
        self
    }

    pub fn end(&mut self) -> &mut Self {
        self.token(2);
        self
    }

    pub fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let offset = match find(&self.strings, name) {
            Some(offset) => offset,
            None => {
                let offset = self.strings.len();
                self.strings.extend_from_slice(name.as_bytes());
                self.strings.push(0);
                offset
            }
        };
        self.token(3);
        self.structure
            .extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.structure
            .extend_from_slice(&(offset as u32).to_be_bytes());
        self.structure.extend_from_slice(value);
        self.pad();
        self
    }

    pub fn reserve(&mut self, address: u64, size: u64) -> &mut Self {
        self.reservations.push((address, size));
        self
    }

    pub fn build(&mut self) -> Vec<u8> {
        self.token(9);
        let reservations_offset = 40;
        let struct_offset = reservations_offset + 16 * (self.reservations.len() + 1);
        let strings_offset = struct_offset + self.structure.len();
        let total = strings_offset + self.strings.len();
        let mut blob = Vec::new();
        for word in [
            0xd00d_feed,
            total as u32,
            struct_offset as u32,
            strings_offset as u32,
            reservations_offset as u32,
            17,
            16,
            0,
            self.strings.len() as u32,
            self.structure.len() as u32,
        ] {
            blob.extend_from_slice(&u32::to_be_bytes(word));
        }
        for (address, size) in self.reservations.iter().chain([&(0, 0)]) {
            blob.extend_from_slice(&address.to_be_bytes());
            blob.extend_from_slice(&size.to_be_bytes());
        }
        blob.extend_from_slice(&self.structure);
        blob.extend_from_slice(&self.strings);
        blob
    }

    fn token(&mut self, token: u32) {
        self.structure.extend_from_slice(&token.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }
}

fn find(strings: &[u8], name: &str) -> Option<usize> {
    let mut offset = 0;
    for entry in strings.split(|&byte| byte == 0) {
        if entry == name.as_bytes() {
            return Some(offset);
        }
        offset += entry.len() + 1;
    }
    None
}

pub fn cells(values: &[u32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_be_bytes())
        .collect()
}

pub fn strings(values: &[&str]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.bytes().chain([0]))
        .collect()
}

/// A guest tree like libxl's for a GICv3 domain with 64 MiB and vpl011.
/// Nodes named in `skip` are left out; `(node, property, value)` entries in
/// `replace` override a property's value (an empty value removes it).
pub fn guest_tree(skip: &[&str], replace: &[(&str, &str, Vec<u8>)]) -> Vec<u8> {
    type Properties<'a> = Vec<(&'a str, Vec<u8>)>;
    let nodes: Vec<(&str, Properties)> = vec![
        (
            "chosen",
            vec![("bootargs", strings(&["scene=bars loglevel=debug"]))],
        ),
        (
            "memory@40000000",
            vec![
                ("device_type", strings(&["memory"])),
                ("reg", cells(&[0, 0x4000_0000, 0, 0x0400_0000])),
            ],
        ),
        (
            "interrupt-controller@3001000",
            vec![
                ("compatible", strings(&["arm,gic-v3"])),
                ("#interrupt-cells", cells(&[3])),
                ("#address-cells", cells(&[0])),
                ("interrupt-controller", vec![]),
                (
                    "reg",
                    cells(&[0, 0x0300_1000, 0, 0x1_0000, 0, 0x0302_0000, 0, 0x100_0000]),
                ),
            ],
        ),
        (
            "timer",
            vec![
                ("compatible", strings(&["arm,armv8-timer"])),
                (
                    "interrupts",
                    cells(&[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08]),
                ),
            ],
        ),
        (
            "hypervisor",
            vec![
                ("compatible", strings(&["xen,xen-4.17", "xen,xen"])),
                ("reg", cells(&[0, 0x3800_0000, 0, 0x100_0000])),
                ("interrupts", cells(&[1, 15, 0xf08])),
            ],
        ),
        (
            "sbsa-pl011",
            vec![
                ("compatible", strings(&["arm,sbsa-uart"])),
                ("reg", cells(&[0, 0x2200_0000, 0, 0x1000])),
                ("interrupts", cells(&[0, 0, 0xf04])),
            ],
        ),
    ];
    let mut builder = FdtBuilder::default();
    builder.begin("");
    builder.prop("#address-cells", &cells(&[2]));
    builder.prop("#size-cells", &cells(&[2]));
    for (node, properties) in &nodes {
        if skip.contains(node) {
            continue;
        }
        builder.begin(node);
        for (name, value) in properties {
            let replaced = replace
                .iter()
                .find(|(target, property, _)| target == node && property == name);
            match replaced {
                Some((_, _, value)) if value.is_empty() => {}
                Some((_, _, value)) => {
                    builder.prop(name, value);
                }
                None => {
                    builder.prop(name, value);
                }
            }
        }
        builder.end();
    }
    builder.end();
    builder.build()
}
