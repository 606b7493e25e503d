#!/usr/bin/env python3
"""Lets TorchSharp 0.107.0's libLibTorchSharp.so load on a libstdc++ older than GCC 13's (Debian 12: GLIBCXX_3.4.30).

  weak-glibcxx.py LIBRARY [VERSION]      VERSION defaults to GLIBCXX_3.4.32

The library asks for VERSION in its .gnu.version_r, and the dynamic loader refuses it when libstdc++ lacks that
version; TorchSharp then reports, misleadingly, that it "doesn't contain a reference to libtorch-cpu-linux-x64".
The only symbol of that version is std::ios_base_library_init(), which GCC 13 emits into every object that
includes <iostream> and no relocation uses. So the script checks exactly that (every dynamic symbol of VERSION,
every relocation against one) and then sets VER_FLG_WEAK in that Vernaux entry's vna_flags: the loader treats a
weak version that is missing as no error. It edits LIBRARY in place, after making it a file of its own (a hard
link or a symbolic link into the NuGet cache is replaced by a copy first), and does nothing when the flag is
already set. Exit status 1 when the library does not look as described, and nothing is written.
"""
import os
import shutil
import struct
import sys

SHT_RELA, SHT_DYNSYM, SHT_GNU_VERNEED, SHT_GNU_VERSYM = 4, 11, 0x6FFFFFFE, 0x6FFFFFFF
VER_FLG_WEAK = 0x2
ALLOWED_SYMBOLS = {"_ZSt21ios_base_library_initv"}


def fail(message):
    print(f"weak-glibcxx: {message}", file=sys.stderr)
    sys.exit(1)


def c_string(data, offset):
    return data[offset:data.index(b"\0", offset)].decode()


def sections(elf):
    """(type, offset, size, link, entsize) of every section of a little-endian ELF64 file."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        fail("not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
    result = []
    for i in range(shnum):
        _, kind, _, _, offset, size, link, _, _, entsize = struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize)
        result.append((kind, offset, size, link, entsize))
    return result


def version_entry(elf, table, version):
    """The file offset of the Vernaux entry named `version`, and its version index (vna_other)."""
    _, offset, _, link, _ = table
    strings = sections(elf)[link][1]
    need = offset
    while True:
        _, count, _, aux, next_need = struct.unpack_from("<HHIII", elf, need)
        entry = need + aux
        for _ in range(count):
            _, _, other, name, next_aux = struct.unpack_from("<IHHII", elf, entry)
            if c_string(elf, strings + name) == version:
                return entry, other
            entry += next_aux
        if next_need == 0:
            fail(f"the library does not ask for {version}")
        need += next_need


def main():
    if len(sys.argv) not in (2, 3):
        fail("usage: weak-glibcxx.py LIBRARY [VERSION]")
    path = sys.argv[1]
    version = sys.argv[2] if len(sys.argv) == 3 else "GLIBCXX_3.4.32"
    elf = bytearray(open(path, "rb").read())
    table = sections(elf)
    by_type = {}
    for s in table:
        by_type.setdefault(s[0], []).append(s)
    entry, index = version_entry(elf, by_type[SHT_GNU_VERNEED][0], version)

    # Dynamic symbols whose version (.gnu.version, one uint16 per symbol; bit 15 marks hidden) is that index.
    _, symtab, symsize, strlink, symentsize = by_type[SHT_DYNSYM][0]
    strings = table[strlink][1]
    versym = by_type[SHT_GNU_VERSYM][0][1]
    of_version = set()
    for i in range(symsize // symentsize):
        if struct.unpack_from("<H", elf, versym + 2 * i)[0] & 0x7FFF == index:
            of_version.add(i)
    names = {c_string(elf, strings + struct.unpack_from("<I", elf, symtab + i * symentsize)[0]) for i in of_version}
    if not names <= ALLOWED_SYMBOLS:
        fail(f"{version} has symbols {sorted(names - ALLOWED_SYMBOLS)} beyond {sorted(ALLOWED_SYMBOLS)}: a weak version would leave them unbound")
    for _, offset, size, _, entsize in by_type.get(SHT_RELA, []):
        for r in range(offset, offset + size, entsize):
            if struct.unpack_from("<Q", elf, r + 8)[0] >> 32 in of_version:
                fail(f"a relocation uses a symbol of {version}")

    flags, = struct.unpack_from("<H", elf, entry + 4)
    if flags & VER_FLG_WEAK:
        print(f"weak-glibcxx: {path}: {version} is already weak")
        return
    struct.pack_into("<H", elf, entry + 4, flags | VER_FLG_WEAK)
    # A file of our own: the build may have hard-linked or symlinked the NuGet cache's copy, which must stay as it is.
    temporary = path + ".weak-glibcxx"
    with open(temporary, "wb") as f:
        f.write(elf)
    shutil.copymode(os.path.realpath(path), temporary)
    os.replace(temporary, path)
    print(f"weak-glibcxx: {path}: {version} marked weak ({', '.join(sorted(names))})")


if __name__ == "__main__":
    main()
