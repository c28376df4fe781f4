"""The image cache: decode once, share across fits and processes, survive damage."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bmdkit.io import cache_clear, cache_info, load_images


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 65535, (30, 40), dtype=np.uint16)).save(path)
        paths.append(str(path))
    cache_clear()
    yield paths
    cache_clear()


def test_each_file_is_decoded_once_per_process(files):
    first = load_images(files, image_size=16)
    second = load_images(files[::-1], image_size=16)
    np.testing.assert_array_equal(second, first[::-1])
    info = cache_info()
    assert info.decoded == 6 and info.memory_hits == 6


def test_settings_and_edits_are_part_of_the_key(files):
    load_images(files, image_size=16)
    load_images(files, image_size=24)
    load_images(files, image_size=16, contrast="minmax")
    assert cache_info().decoded == 18
    Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40)).save(files[0])
    os.utime(files[0], ns=(1, 1))  # a different mtime even on coarse file systems
    edited = load_images(files[:1], image_size=16)
    assert cache_info().decoded == 19
    assert edited[0, 8].std() > 0


def test_disk_cache_is_shared_with_another_process(files, tmp_path):
    cache = tmp_path / "cache"
    expected = load_images(files, image_size=16, cache_dir=cache)
    code = (
        "import sys, numpy as np; from bmdkit.io import load_images, cache_info; "
        f"a = load_images({files!r}, image_size=16, cache_dir={str(cache)!r}); "
        "np.save(sys.argv[1], a); print(cache_info().decoded, cache_info().disk_hits)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.npy")],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "6"]
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), expected)


def test_damaged_entry_is_detected_and_rebuilt(files, tmp_path):
    cache = tmp_path / "cache"
    expected = load_images(files, image_size=16, cache_dir=cache)
    entries = sorted(p for p in cache.rglob("*.bin"))
    assert len(entries) == 6
    data = bytearray(entries[0].read_bytes())
    data[-5] ^= 0xFF
    entries[0].write_bytes(bytes(data))
    entries[1].write_bytes(entries[1].read_bytes()[:10])  # truncated
    cache_clear()
    again = load_images(files, image_size=16, cache_dir=cache)
    np.testing.assert_array_equal(again, expected)
    info = cache_info()
    assert info.damaged == 2 and info.decoded == 2 and info.disk_hits == 4
    assert not list(cache.rglob("*.tmp")), "no half-written entries left"


def test_memory_stays_bounded_for_cohorts_larger_than_the_limit(files, monkeypatch):
    monkeypatch.setenv("BMDKIT_CACHE_MEMORY_MB", "0.002")  # ~2 KB: less than the result
    out = load_images(files, image_size=16)
    assert isinstance(out, np.memmap) and out.shape == (6, 16, 16)
    assert cache_info().memory_bytes <= 2100


def test_a_new_cache_dir_holds_a_result_larger_than_the_memory_limit(files, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("BMDKIT_CACHE_MEMORY_MB", "0.001")
    cache = tmp_path / "new" / "cache"  # does not exist yet
    out = load_images(files, image_size=16, cache_dir=cache)
    assert isinstance(out, np.memmap) and out.shape == (6, 16, 16)
    assert len(list(cache.rglob("*.bin"))) == 6


def test_an_unwritable_cache_folder_gives_one_warning(files, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "images-v1").write_text("a file where the entries' folder should be")
    with pytest.warns(RuntimeWarning) as record:
        out = load_images(files, image_size=16, cache_dir=cache)
    assert out.shape == (6, 16, 16)
    assert len(record) == 1
    message = str(record[0].message)
    assert str(cache / "images-v1") in message and "6 entries not written" in message


def test_the_memory_limit_must_be_a_number(files, monkeypatch):
    monkeypatch.setenv("BMDKIT_CACHE_MEMORY_MB", "1G")
    with pytest.raises(ValueError, match=r"BMDKIT_CACHE_MEMORY_MB .*'1G'"):
        load_images(files, image_size=16)


def test_a_blank_image_is_named_once(files, tmp_path):
    from bmdkit.checks import InputError

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((24, 24), 7, np.uint8)).save(blank)
    with pytest.raises(InputError, match="blank image") as info:
        load_images([*files, str(blank)], image_size=16)
    assert str(info.value).count(str(blank)) == 1
    assert info.value.problems[f"row 6: {blank}"] == (
        "ValueError: blank image: every pixel has the same value")


def test_cache_clear_resets_entries_and_counters_together(files):
    load_images(files, image_size=16)
    load_images(files, image_size=16)
    info = cache_info()
    assert info.decoded == 6 and info.memory_hits == 6 and info.memory_bytes > 0
    cache_clear()
    assert cache_info() == (0, 0, 0, 0, 0, 0)
