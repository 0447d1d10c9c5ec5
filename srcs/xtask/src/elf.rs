//! What the VMs need of a binary, read from its ELF headers: the right CPU,
//! linked statically (no interpreter, no shared libraries), stripped.

use goblin::elf::{header, program_header::PT_INTERP, Elf};

use crate::target::Arch;

/// Checks one binary; the error says what is wrong with it.
pub fn check(bytes: &[u8], arch: Arch) -> Result<String, String> {
    let elf = Elf::parse(bytes).map_err(|e| format!("not an ELF file ({e})"))?;
    if elf.header.e_machine != arch.elf_machine() {
        return Err(format!(
            "built for {} instead of {} ({arch})",
            header::machine_to_str(elf.header.e_machine),
            header::machine_to_str(arch.elf_machine())
        ));
    }
    if elf.program_headers.iter().any(|p| p.p_type == PT_INTERP) || !elf.libraries.is_empty() {
        return Err(format!(
            "dynamically linked (needs {})",
            elf.libraries.join(", ")
        ));
    }
    let has_symtab = elf
        .section_headers
        .iter()
        .any(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".symtab"));
    if has_symtab {
        return Err("not stripped (has a .symtab section)".to_string());
    }
    let kind = if elf.header.e_type == header::ET_DYN {
        "static-pie"
    } else {
        "static"
    };
    Ok(format!(
        "ELF {} {kind}, stripped",
        header::machine_to_str(elf.header.e_machine)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_itself_is_not_a_vm_binary() {
        // This test binary is a debug build for the host: dynamic (gnu) and not
        // stripped, or of another CPU; either way it must be refused.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(check(&me, Arch::Amd64).is_err());
        assert!(check(&me, Arch::Arm64).is_err());
    }

    /// A bare ELF64 header (no program or section headers): a static,
    /// stripped executable of `machine` as far as `check` can tell.
    fn header(machine: u16) -> Vec<u8> {
        let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        h.extend_from_slice(&header::ET_EXEC.to_le_bytes());
        h.extend_from_slice(&machine.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes()); // e_version
        h.extend_from_slice(&[0; 24]); // e_entry, e_phoff, e_shoff
        h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        for v in [64u16, 56, 0, 64, 0, 0] {
            // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    }

    #[test]
    fn each_arch_takes_only_its_own_cpu() {
        let arm = header(header::EM_AARCH64);
        assert_eq!(
            check(&arm, Arch::Arm64).as_deref(),
            Ok("ELF AARCH64 static, stripped")
        );
        assert_eq!(
            check(&arm, Arch::Amd64).unwrap_err(),
            "built for AARCH64 instead of X86_64 (amd64)"
        );
        let x86 = header(header::EM_X86_64);
        assert_eq!(
            check(&x86, Arch::Arm64).unwrap_err(),
            "built for X86_64 instead of AARCH64 (arm64)"
        );
        assert!(check(&x86, Arch::Amd64).is_ok());
    }

    #[test]
    fn not_elf_is_refused() {
        assert!(check(b"#!/bin/sh\n", Arch::Amd64)
            .unwrap_err()
            .starts_with("not an ELF file"));
    }
}
