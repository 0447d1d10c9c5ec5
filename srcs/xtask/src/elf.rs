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

    #[test]
    fn not_elf_is_refused() {
        assert!(check(b"#!/bin/sh\n", Arch::Amd64)
            .unwrap_err()
            .starts_with("not an ELF file"));
    }
}
