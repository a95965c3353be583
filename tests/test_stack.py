"""The initial stack image: layout and alignment (pure)."""
import struct

import pytest

from sameprocess._auxv import AT
from sameprocess._stack import build


def words(image, index):
    return struct.unpack_from("<Q", image.data, index * 8)[0]


def cstring(image, addr):
    off = addr - image.sp
    return image.data[off:image.data.index(b"\0", off)]


@pytest.mark.parametrize("argv", [[b"a"], [b"prog", b"x", b""], [b"p"] * 7])
def test_layout_matches_the_abi(argv):
    top = 0x7FFF_0000_0000
    envp = [b"A=1", b"LONG=" + b"v" * 100]
    image = build(top, argv, envp, b"/bin/prog", [(AT.PAGESZ, 4096)], {AT.PLATFORM: b"x86_64"}, b"R" * 16)
    assert image.sp % 16 == 0 and image.sp + len(image.data) == top
    assert words(image, 0) == len(argv)
    assert [cstring(image, words(image, 1 + i)) for i in range(len(argv))] == argv
    assert words(image, 1 + len(argv)) == 0
    env_base = 2 + len(argv)
    assert [cstring(image, words(image, env_base + i)) for i in range(2)] == envp
    assert words(image, env_base + 2) == 0
    aux, i = {}, env_base + 3
    while words(image, i) != AT.NULL:
        aux[words(image, i)] = words(image, i + 1)
        i += 2
    assert aux[AT.PAGESZ] == 4096
    assert cstring(image, aux[AT.PLATFORM]) == b"x86_64"
    assert cstring(image, aux[AT.EXECFN]) == b"/bin/prog"
    random_off = aux[AT.RANDOM] - image.sp
    assert image.data[random_off:random_off + 16] == b"R" * 16
    assert image.data[-8:] == b"\0" * 8  # end marker at the very top


def test_the_template_names_every_pointer_word():
    """A spawn writes the template for top 0 and has sp_exec add the real
    top to the words `relocs` names: those must be exactly the words that
    differ between two tops."""
    from sameprocess._stack import template
    args = ([b"prog", b"-x"], [b"A=1", b"B=2", b"C="], b"/bin/prog",
            [(AT.PAGESZ, 4096), (AT.HWCAP, 7)], {AT.PLATFORM: b"x86_64", AT.BASE_PLATFORM: b"x86_64"})
    made = template(*args)
    low, high = made.at(0x7F00_0000_0000, b"R" * 16), made.at(0x7FFF_FFFF_F000, b"R" * 16)
    assert high.sp - low.sp == 0x7FFF_FFFF_F000 - 0x7F00_0000_0000 and low.data != high.data
    n = len(low.data) // 8
    differ = {i for i in range(n) if low.data[8 * i:8 * i + 8] != high.data[8 * i:8 * i + 8]}
    assert differ == set(made.relocs)
    assert list(made.native_relocs)[:len(made.relocs)] == list(made.relocs)
    assert low == build(0x7F00_0000_0000, *args[:5], b"R" * 16)
