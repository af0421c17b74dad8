from smray.ray_bootstrap.object_store import MIB, RAY_MINIMUM, SHM, SPILL_DIR, plan


def test_default_is_ray_share_of_memory_in_shm():
    p = plan(memory_bytes=4096 * MIB, shm_free_bytes=2048 * MIB)
    assert p.size_bytes == int(4096 * MIB * 0.3) and p.directory == SHM
    assert "object store: 1228 MiB in /dev/shm" in p.describe()


def test_shrinks_to_fit_a_smaller_shm():
    p = plan(memory_bytes=8192 * MIB, shm_free_bytes=512 * MIB)
    assert p.directory == SHM and p.size_bytes == int(512 * MIB * 0.9)
    assert "shrunk to fit" in p.describe()


def test_docker_default_shm_falls_back_to_disk_and_says_so():
    p = plan(memory_bytes=8192 * MIB, shm_free_bytes=64 * MIB)
    assert p.directory == SPILL_DIR
    assert "larger shm size" in p.describe()


def test_requested_size_is_kept_and_never_below_ray_minimum():
    assert plan(4096 * MIB, 2048 * MIB, requested_bytes=300 * MIB).size_bytes == 300 * MIB
    assert plan(4096 * MIB, 2048 * MIB, requested_bytes=1 * MIB).size_bytes == RAY_MINIMUM
    too_big = plan(4096 * MIB, 256 * MIB, requested_bytes=1024 * MIB)
    assert too_big.size_bytes == 1024 * MIB and too_big.directory == SPILL_DIR
