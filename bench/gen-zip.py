#!/usr/bin/env python3
"""Writes a benchmark archive of one shape straight into a zip (no tree on disk): python3 gen-zip.py SHAPE OUT.zip

Shapes (deterministic names, sizes and text; random bodies come from os.urandom):
  small     20,480 files of 1-8 KiB in nested folders, half text half random, 1 in 10 mode 0755
  mixed     20 random 10 MiB files (stored, as Info-ZIP zip stores what does not compress), 40 compressible 10 MiB
            logs, 4,000 tiny files: about 330 MiB zipped, 4,060 entries, 620 MiB inflated
  big       one 2 GiB entry of compressible log text (about 560 MiB zipped)
  many83k   83,000 entries, 2 GB: 82,900 small files and 100 random 19 MiB blobs (stored)
  many300k  300,000 tiny files (memory test: the entry count, not the bodies, is what matters)
  ranged    1 GiB of 16 random 64 MiB files, stored (bench/ranged.ts: the bytes on the wire are the point, not inflating)
Entries are deflated at level 6 (Info-ZIP's and GitLab Runner's default) with unix modes, made on unix (host 3).
Prints one JSON line: {"entries", "files", "inflated", "composition"}.
"""
import json, os, random, sys, time, zipfile, zlib

shape, out = sys.argv[1], sys.argv[2]
MB = 1024 * 1024
rnd = random.Random(42)
comp = {}
LEVELS = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR']
WORDS = 'request served cache miss hit upload artifact job runner pipeline compile link test passed failed retry worker queue'.split()


def log_block(n_lines):
    lines = []
    for _ in range(n_lines):
        lines.append('2026-11-%02dT%02d:%02d:%02d.%03dZ %-5s [worker-%d] %s %s id=%08x took=%dms bytes=%d\n' % (
            rnd.randint(1, 28), rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59), rnd.randint(0, 999),
            rnd.choice(LEVELS), rnd.randint(1, 16), rnd.choice(WORDS), ' '.join(rnd.choices(WORDS, k=rnd.randint(2, 6))),
            rnd.getrandbits(32), rnd.randint(1, 5000), rnd.randint(0, 10**7)))
    return ''.join(lines).encode()


BLOCK = log_block(40000)  # ~4 MB; repeats are farther apart than deflate's 32 KiB window
z = zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED, compresslevel=6, allowZip64=True)
now = time.localtime()[:6]


def put(kind, name, data, mode=0o644, method=zipfile.ZIP_DEFLATED):
    zi = zipfile.ZipInfo(name, now)
    zi.create_system = 3
    zi.external_attr = (0o100000 | mode) << 16
    zi.compress_type = method
    z.writestr(zi, data)
    c = comp.setdefault(kind, {'files': 0, 'bytes': 0})
    c['files'] += 1
    c['bytes'] += len(data)


def put_stream(kind, name, size, chunks, mode=0o644):
    """A large entry written piece by piece (never held in memory whole)."""
    zi = zipfile.ZipInfo(name, now)
    zi.create_system = 3
    zi.external_attr = (0o100000 | mode) << 16
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.file_size = size
    with z.open(zi, 'w', force_zip64=size > 0xFFFFFFFF - 1) as f:
        for c in chunks:
            f.write(c)
    k = comp.setdefault(kind, {'files': 0, 'bytes': 0})
    k['files'] += 1
    k['bytes'] += size


def small(n, prefix='src', lo=1024, hi=8192):
    for i in range(n):
        size = rnd.randint(lo, hi)
        data = os.urandom(size) if i % 2 else BLOCK[(o := rnd.randrange(len(BLOCK) - size)):o + size]
        d = '%s/mod%02d/pkg%02d/sub%d' % (prefix, i % 25, (i // 25) % 20, i % 2)
        put('small', '%s/f%06d.%s' % (d, i, 'dat' if i % 2 else 'txt'), data, 0o755 if i % 10 == 0 else 0o644)


def text(size):
    reps, rest = divmod(size, len(BLOCK))
    return BLOCK * reps + BLOCK[:rest]


if shape == 'small':
    small(20480)
elif shape == 'mixed':
    for i in range(20):
        put('random', 'bin/blob-%02d.bin' % i, os.urandom(10 * MB), 0o755 if i % 3 == 0 else 0o644, zipfile.ZIP_STORED)
    for i in range(40):
        put('logs', 'logs/run-%02d.log' % i, text(10 * MB))
    small(4000, lo=64, hi=8192)
elif shape == 'big':
    size = 2 * 1024 * MB
    step = len(BLOCK)
    put_stream('big', 'big/all.log', size, (BLOCK[:min(step, size - o)] for o in range(0, size, step)))
elif shape == 'many83k':
    for i in range(100):
        put('random', 'bin/blob-%03d.bin' % i, os.urandom(19 * MB), 0o644, zipfile.ZIP_STORED)
    small(82900, lo=64, hi=2048)
elif shape == 'many300k':
    small(300000, lo=1, hi=64)
elif shape == 'ranged':
    for i in range(16):
        put('random', 'data/e%02d.bin' % i, os.urandom(64 * MB), 0o644, zipfile.ZIP_STORED)
else:
    sys.exit('unknown shape ' + shape)
z.close()
files = sum(c['files'] for c in comp.values())
print(json.dumps({'entries': files, 'files': files, 'inflated': sum(c['bytes'] for c in comp.values()), 'composition': comp}))
