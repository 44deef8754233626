//! The last step of every container process: a tiny static program, held in a sealed
//! `memfd`, that `execve`s the user's program (CVE-2019-5736).
//!
//! The init and `exec` processes are forks of the calling program (the runtime, or any
//! program that embeds this library), so until they `execve` their `/proc/self/exe` is
//! that program's binary on the host. An image whose `/bin/sh` is the script
//! `#!/proc/self/exe` makes that `execve` run the host binary inside the container, with
//! the image's dynamic loader: the loader keeps `/proc/self/exe` open and rewrites the
//! binary once the runtime has exited. So the runtime never `execve`s the user's program
//! itself: it `execveat`s this trampoline first, and at the user's `execve` the process's
//! `/proc/self/exe` is the trampoline: write-sealed, static (no loader from the image is
//! ever mapped into it) and without any host file behind it. A `#!/proc/self/exe` script
//! reaches only the trampoline, which refuses to run with arguments it did not get from
//! us.
//!
//! The trampoline's protocol: `argv = [channel fd in decimal, program, argv...]`. It marks
//! the channel close-on-exec, `execve(program, argv, envp)`, and when that fails sends the
//! errno (4 bytes, native endian) on the channel and exits 127 (`ENOENT`) or 126.
//!
//! Its machine code (x86_64 and aarch64) was assembled from the source in the comments
//! below with `as`/`llvm-mc`; the ELF header around it is written here.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use rustix::fs::{MemfdFlags, SealFlags};

/// x86_64:
/// ```text
///     mov rbx, [rsp]              ; argc
///     lea r12, [rsp+8]            ; argv
///     lea r14, [r12+rbx*8+8]      ; envp
///     mov r13d, -1
///     cmp rbx, 2
///     jb .Lfail
///     mov rsi, [r12]              ; argv[0]: the channel fd in decimal
///     xor edi, edi
/// .Lparse:
///     movzx eax, byte ptr [rsi]
///     test eax, eax
///     jz .Lparsed
///     sub eax, 48
///     cmp eax, 9
///     ja .Lfail
///     imul edi, edi, 10
///     add edi, eax
///     inc rsi
///     jmp .Lparse
/// .Lparsed:
///     mov r13d, edi
///     mov esi, 2                  ; fcntl(fd, F_SETFD, FD_CLOEXEC)
///     mov edx, 1
///     mov eax, 72
///     syscall
///     mov rdi, [r12+8]            ; execve(argv[1], &argv[2], envp)
///     lea rsi, [r12+16]
///     mov rdx, r14
///     mov eax, 59
///     syscall
///     neg eax
///     mov r15d, eax               ; errno
///     sub rsp, 16
///     mov [rsp], eax
///     mov edi, r13d               ; sendto(fd, &errno, 4, MSG_NOSIGNAL, NULL, 0)
///     mov rsi, rsp
///     mov edx, 4
///     mov r10d, 0x4000
///     xor r8d, r8d
///     xor r9d, r9d
///     mov eax, 44
///     syscall
///     mov edi, 126
///     cmp r15d, 2
///     jne .Lexit
///     mov edi, 127
///     jmp .Lexit
/// .Lfail:
///     mov edi, 126
/// .Lexit:
///     mov eax, 231                ; exit_group
///     syscall
///     hlt
/// ```
#[cfg(target_arch = "x86_64")]
const CODE: &[u8] = &[
    0x48, 0x8b, 0x1c, 0x24, 0x4c, 0x8d, 0x64, 0x24, 0x08, 0x4d, 0x8d, 0x74, 0xdc, 0x08, 0x41, 0xbd,
    0xff, 0xff, 0xff, 0xff, 0x48, 0x83, 0xfb, 0x02, 0x0f, 0x82, 0x83, 0x00, 0x00, 0x00, 0x49, 0x8b,
    0x34, 0x24, 0x31, 0xff, 0x0f, 0xb6, 0x06, 0x85, 0xc0, 0x74, 0x12, 0x83, 0xe8, 0x30, 0x83, 0xf8,
    0x09, 0x77, 0x6e, 0x6b, 0xff, 0x0a, 0x01, 0xc7, 0x48, 0xff, 0xc6, 0xeb, 0xe7, 0x41, 0x89, 0xfd,
    0xbe, 0x02, 0x00, 0x00, 0x00, 0xba, 0x01, 0x00, 0x00, 0x00, 0xb8, 0x48, 0x00, 0x00, 0x00, 0x0f,
    0x05, 0x49, 0x8b, 0x7c, 0x24, 0x08, 0x49, 0x8d, 0x74, 0x24, 0x10, 0x4c, 0x89, 0xf2, 0xb8, 0x3b,
    0x00, 0x00, 0x00, 0x0f, 0x05, 0xf7, 0xd8, 0x41, 0x89, 0xc7, 0x48, 0x83, 0xec, 0x10, 0x89, 0x04,
    0x24, 0x44, 0x89, 0xef, 0x48, 0x89, 0xe6, 0xba, 0x04, 0x00, 0x00, 0x00, 0x41, 0xba, 0x00, 0x40,
    0x00, 0x00, 0x45, 0x31, 0xc0, 0x45, 0x31, 0xc9, 0xb8, 0x2c, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xbf,
    0x7e, 0x00, 0x00, 0x00, 0x41, 0x83, 0xff, 0x02, 0x75, 0x0c, 0xbf, 0x7f, 0x00, 0x00, 0x00, 0xeb,
    0x05, 0xbf, 0x7e, 0x00, 0x00, 0x00, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xf4,
];
#[cfg(target_arch = "x86_64")]
const MACHINE: u16 = 62; // EM_X86_64

/// aarch64 (the same steps; fcntl 25, execve 221, sendto 206, exit_group 94):
/// ```text
///     ldr x19, [sp]
///     add x20, sp, #8
///     add x21, x20, x19, lsl #3
///     add x21, x21, #8
///     cmp x19, #2
///     b.lo .Lfail
///     ldr x1, [x20]
///     mov w22, #0
/// .Lparse:
///     ldrb w2, [x1], #1
///     cbz w2, .Lparsed
///     sub w2, w2, #48
///     cmp w2, #9
///     b.hi .Lfail
///     mov w3, #10
///     madd w22, w22, w3, w2
///     b .Lparse
/// .Lparsed:
///     mov w0, w22
///     mov x1, #2
///     mov x2, #1
///     mov x8, #25
///     svc #0
///     ldr x0, [x20, #8]
///     add x1, x20, #16
///     mov x2, x21
///     mov x8, #221
///     svc #0
///     neg w23, w0
///     sub sp, sp, #16
///     str w23, [sp]
///     mov w0, w22
///     mov x1, sp
///     mov x2, #4
///     mov x3, #0x4000
///     mov x4, #0
///     mov x5, #0
///     mov x8, #206
///     svc #0
///     mov x0, #126
///     cmp w23, #2
///     b.ne .Lexit
///     mov x0, #127
///     b .Lexit
/// .Lfail:
///     mov x0, #126
/// .Lexit:
///     mov x8, #94
///     svc #0
///     brk #0
/// ```
#[cfg(target_arch = "aarch64")]
const CODE: &[u8] = &[
    0xf3, 0x03, 0x40, 0xf9, 0xf4, 0x23, 0x00, 0x91, 0x95, 0x0e, 0x13, 0x8b, 0xb5, 0x22, 0x00, 0x91,
    0x7f, 0x0a, 0x00, 0xf1, 0xa3, 0x04, 0x00, 0x54, 0x81, 0x02, 0x40, 0xf9, 0x16, 0x00, 0x80, 0x52,
    0x22, 0x14, 0x40, 0x38, 0xe2, 0x00, 0x00, 0x34, 0x42, 0xc0, 0x00, 0x51, 0x5f, 0x24, 0x00, 0x71,
    0xc8, 0x03, 0x00, 0x54, 0x43, 0x01, 0x80, 0x52, 0xd6, 0x0a, 0x03, 0x1b, 0xf9, 0xff, 0xff, 0x17,
    0xe0, 0x03, 0x16, 0x2a, 0x41, 0x00, 0x80, 0xd2, 0x22, 0x00, 0x80, 0xd2, 0x28, 0x03, 0x80, 0xd2,
    0x01, 0x00, 0x00, 0xd4, 0x80, 0x06, 0x40, 0xf9, 0x81, 0x42, 0x00, 0x91, 0xe2, 0x03, 0x15, 0xaa,
    0xa8, 0x1b, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4, 0xf7, 0x03, 0x00, 0x4b, 0xff, 0x43, 0x00, 0xd1,
    0xf7, 0x03, 0x00, 0xb9, 0xe0, 0x03, 0x16, 0x2a, 0xe1, 0x03, 0x00, 0x91, 0x82, 0x00, 0x80, 0xd2,
    0x03, 0x00, 0x88, 0xd2, 0x04, 0x00, 0x80, 0xd2, 0x05, 0x00, 0x80, 0xd2, 0xc8, 0x19, 0x80, 0xd2,
    0x01, 0x00, 0x00, 0xd4, 0xc0, 0x0f, 0x80, 0xd2, 0xff, 0x0a, 0x00, 0x71, 0x81, 0x00, 0x00, 0x54,
    0xe0, 0x0f, 0x80, 0xd2, 0x02, 0x00, 0x00, 0x14, 0xc0, 0x0f, 0x80, 0xd2, 0xc8, 0x0b, 0x80, 0xd2,
    0x01, 0x00, 0x00, 0xd4, 0x00, 0x00, 0x20, 0xd4,
];
#[cfg(target_arch = "aarch64")]
const MACHINE: u16 = 183; // EM_AARCH64

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "longshore-container's exec trampoline (CVE-2019-5736) exists for x86_64 and aarch64 only"
);

/// Where the one PT_LOAD segment (the whole file) is mapped: 64 KiB aligned for every
/// page size.
const BASE: u64 = 0x10000;
const EHDR: usize = 64;
const PHDR: usize = 56;

/// The trampoline as an ELF executable: header, one program header, code.
fn elf() -> Vec<u8> {
    let size = (EHDR + PHDR + CODE.len()) as u64;
    let mut f = Vec::with_capacity(size as usize);
    // e_ident: magic, 64-bit, little endian, version 1, System V ABI
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    f.extend_from_slice(&MACHINE.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&(BASE + (EHDR + PHDR) as u64).to_le_bytes()); // e_entry
    f.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(EHDR as u16).to_le_bytes()); // e_ehsize
    f.extend_from_slice(&(PHDR as u16).to_le_bytes()); // e_phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    debug_assert_eq!(f.len(), EHDR);
    f.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R + X
    f.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    f.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    f.extend_from_slice(&size.to_le_bytes()); // p_filesz
    f.extend_from_slice(&size.to_le_bytes()); // p_memsz
    f.extend_from_slice(&0x10000u64.to_le_bytes()); // p_align
    debug_assert_eq!(f.len(), EHDR + PHDR);
    f.extend_from_slice(CODE);
    f
}

/// The sealed trampoline of this process, made on first use (one `memfd` per process,
/// close-on-exec, sealed against writes, growing, shrinking and further seals).
pub(crate) fn fd() -> io::Result<BorrowedFd<'static>> {
    static FD: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = FD.get() {
        return Ok(fd.as_fd());
    }
    let made = make()?;
    // a racing thread may have won: its descriptor is as good as ours
    Ok(FD.get_or_init(|| made).as_fd())
}

fn make() -> io::Result<OwnedFd> {
    // MFD_EXEC: kernels with vm.memfd_noexec refuse to execute memfds made without it
    let exec = MemfdFlags::from_bits_retain(0x10);
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd = match rustix::fs::memfd_create("longshore-exec", flags | exec) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create("longshore-exec", flags)?,
        r => r?,
    };
    let image = elf();
    let mut written = 0;
    while written < image.len() {
        written += rustix::io::write(&fd, &image[written..])?;
    }
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_bits_truncate(0o555))?;
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_and_not_writable() {
        let fd = fd().unwrap();
        let seals = rustix::fs::fcntl_get_seals(fd).unwrap();
        assert!(seals.contains(SealFlags::WRITE | SealFlags::SEAL | SealFlags::GROW));
        // even reopened for writing through /proc, the content cannot change
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        // (ETXTBSY already while another test runs it)
        match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(w) => assert_eq!(rustix::io::write(&w, b"x"), Err(rustix::io::Errno::PERM)),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ETXTBSY)),
        }
        assert_eq!(std::fs::read(&path).unwrap(), elf());
    }

    #[test]
    fn runs_the_program_and_reports_failures() {
        use std::os::unix::process::CommandExt;
        let fd = fd().unwrap();
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        // no channel: "-" is not a number, so it refuses to run
        let st = std::process::Command::new(&path)
            .arg0("-")
            .args(["/bin/true"])
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(126));
        // with a channel (here a closed descriptor: the errno send fails quietly)
        let out = std::process::Command::new(&path)
            .arg0("999")
            .args(["/bin/echo", "echo", "hello"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(out.stdout, b"hello\n");
        let st = std::process::Command::new(&path)
            .arg0("999")
            .args(["/no/such/program", "x"])
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(127));
    }
}
