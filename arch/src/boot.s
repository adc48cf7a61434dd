// Entry point of the vdispl-os guest: the arm64 Image header and the code that
// runs with the MMU off.
//
// Boot protocol (Linux Documentation/arm64/booting.rst, as implemented by Xen's
// domain builder): the Image is loaded at RAM base + text_offset and entered at
// offset 0 in EL1h with x0 = physical address of the device tree, x1-x3 = 0,
// all of DAIF masked, and the MMU and data cache off.
//
// The image is linked at address 0 as a position-independent executable: this
// code applies its own R_AARCH64_RELATIVE relocations, so it runs wherever the
// loader put it. Everything written here with the MMU off (relocated data, BSS,
// the boot page table) is then invalidated from the data cache by address
// before caching is turned on, so no stale line can shadow it.

.equ R_AARCH64_RELATIVE, 1027

// MAIR_EL1 attribute indexes (kept in sync with mmu.rs).
.equ MAIR_VALUE, 0x000000000044ff04    // 0: Device-nGnRE, 1: Normal WB RA/WA, 2: Normal NC
.equ DESC_BLOCK, 0x1
.equ DESC_AF, (1 << 10)
.equ DESC_SH_INNER, (3 << 8)
.equ DESC_ATTR_NORMAL, (1 << 2)
.equ DESC_PXN, (1 << 53)
.equ DESC_UXN, (1 << 54)

// Address of a symbol, PC-relative, +/-4 GiB.
.macro adr_l reg, sym
    adrp    \reg, \sym
    add     \reg, \reg, :lo12:\sym
.endm

.section .text.head, "ax"
.global _start
_start:
    b       primary_entry               // code0
    .long   0                           // code1
    .quad   0                           // text_offset: anywhere 2 MiB aligned
    .quad   __image_size                // image_size, BSS and stack included
    .quad   0xa                         // flags: little endian, 4 KiB pages, any placement
    .quad   0                           // res2
    .quad   0                           // res3
    .quad   0                           // res4
    .ascii  "ARM\x64"                   // magic
    .long   0                           // res5: no PE header

.section .text.boot, "ax"
primary_entry:
    msr     daifset, #0xf
    mov     x19, x0                     // x19 = device tree (kept until Rust)

    // FP/SIMD: the aarch64-unknown-none target lets the compiler use NEON
    // registers anywhere (memcpy, memset, wide framebuffer stores), so accesses
    // must not trap before the first line of Rust.
    mov     x1, #(3 << 20)              // CPACR_EL1.FPEN = 0b11
    msr     cpacr_el1, x1
    isb

    // Relocate: every entry is *(base + r_offset) = base + r_addend.
    adr_l   x20, _start                 // x20 = load address = relocation delta
    adr_l   x1, __rela_start
    adr_l   x2, __rela_end
1:  cmp     x1, x2
    b.hs    2f
    ldr     x3, [x1]                    // r_offset
    ldr     x4, [x1, #8]                // r_info
    ldr     x5, [x1, #16]               // r_addend
    add     x1, x1, #24
    cmp     x4, #R_AARCH64_RELATIVE
    b.ne    boot_failed
    add     x5, x5, x20
    str     x5, [x3, x20]
    b       1b
2:
    // Zero BSS (includes the boot page table and the stack).
    adr_l   x1, __bss_start
    adr_l   x2, __bss_end
3:  cmp     x1, x2
    b.hs    4f
    str     xzr, [x1], #8
    b       3b
4:
    // Boot map, one level-1 table of 1 GiB blocks covering a 39-bit space:
    // everything Device-nGnRE, except the gigabytes holding this image and the
    // device tree, which are Normal write-back. Rust replaces it with a precise
    // map built from the device tree.
    adr_l   x1, __boot_l1
    mov     x2, #0                      // gigabyte index
    ldr     x4, =(DESC_BLOCK | DESC_AF | DESC_PXN | DESC_UXN)
5:  lsl     x3, x2, #30
    orr     x3, x3, x4
    str     x3, [x1, x2, lsl #3]
    add     x2, x2, #1
    cmp     x2, #512
    b.lo    5b
    ldr     x4, =(DESC_BLOCK | DESC_AF | DESC_SH_INNER | DESC_ATTR_NORMAL | DESC_UXN)
    lsr     x2, x20, #30                // image start
    bl      boot_map_normal
    adr_l   x2, __image_end
    lsr     x2, x2, #30                 // image end
    bl      boot_map_normal
    lsr     x2, x19, #30                // device tree
    bl      boot_map_normal

    // Drop any stale cache line over what was written above.
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4             // DminLine: log2(words per line)
    mov     x4, #4
    lsl     x4, x4, x3                  // line size in bytes
    sub     x5, x4, #1
    bic     x1, x20, x5
    adr_l   x2, __image_end
6:  dc      ivac, x1
    add     x1, x1, x4
    cmp     x1, x2
    b.lo    6b
    dsb     sy

    // Translation regime: 4 KiB granule, T0SZ = 25 (39-bit VA, walks start at
    // level 1), inner/outer write-back inner-shareable walks, TTBR1 disabled,
    // IPS from the CPU's physical address range.
    ldr     x1, =MAIR_VALUE
    msr     mair_el1, x1
    mrs     x1, id_aa64mmfr0_el1
    and     x1, x1, #0x7                // PARange
    ldr     x2, =((25 << 0) | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23))
    orr     x2, x2, x1, lsl #32         // TCR_EL1.IPS
    msr     tcr_el1, x2
    adr_l   x1, __boot_l1
    msr     ttbr0_el1, x1
    isb
    tlbi    vmalle1
    ic      iallu
    dsb     nsh
    isb

    // SCTLR_EL1: MMU, data and instruction caches on, SP alignment checks on,
    // alignment faults off (A = 0), WXN off.
    mrs     x1, sctlr_el1
    ldr     x2, =((1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 12))
    orr     x1, x1, x2
    bic     x1, x1, #(1 << 1)
    bic     x1, x1, #(1 << 19)
    msr     sctlr_el1, x1
    isb

    adr_l   x1, exception_vector_table
    msr     vbar_el1, x1
    adr_l   x1, __stack_top
    mov     sp, x1
    isb

    mov     x0, x19                     // device tree
    mov     x1, x20                     // load address
    bl      _start_rust
    b       boot_failed

// Sets the level-1 entry for gigabyte x2 of table x1 to x4 | (x2 << 30).
boot_map_normal:
    and     x2, x2, #0x1ff
    lsl     x3, x2, #30
    orr     x3, x3, x4
    str     x3, [x1, x2, lsl #3]
    ret

// Nothing can be printed this early: park the CPU where a debugger sees it.
boot_failed:
    wfe
    b       boot_failed

.ltorg
