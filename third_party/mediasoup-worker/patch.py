#!/usr/bin/env python3
"""Adapt an unpacked mediasoup worker source tree to build offline on Debian.

Usage: patch.py WORKER_DIR COMPAT_DIR

Upstream's meson files fetch abseil, flatbuffers, libsrtp3, libuv, openssl and
unordered_dense as wrap subprojects downloaded from the internet. This script
rewrites those uses into system dependency() lookups of Debian's packages,
relaxes the meson version (Debian bookworm ships 1.0.1), installs our
compatibility headers (libsrtp 3 over libsrtp 2 as <srtp.h>; unordered_dense,
which Debian does not package, over the standard containers as
<ankerl/unordered_dense.h>), and fixes the DTLS BIO callback that crashes with
an OpenSSL built with kernel-TLS support (Debian's). Every edit is checked: if upstream
changes the text we expect, the script fails loudly instead of building
something different.
"""

import os
import re
import shutil
import sys

# Wrap subprojects the worker always uses, replaced by Debian packages.
SUBPROJECTS = ["libuv", "openssl", "libsrtp3", "abseil-cpp", "flatbuffers"]

# get_variable() names used by upstream -> the system dependency expression.
DEPS = {
    "libuv_dep": "dependency('libuv')",
    "openssl_dep": "dependency('openssl')",
    "libsrtp3_dep": "declare_dependency(include_directories: include_directories('compat'), "
    "dependencies: dependency('libsrtp2'))",
    "flatbuffers_dep": "dependency('flatbuffers')",
    "absl_container_dep": "[dependency('absl_flat_hash_map'), dependency('absl_flat_hash_set'), "
    "dependency('absl_btree'), dependency('absl_inlined_vector'), dependency('absl_node_hash_map')]",
    "absl_strings_dep": "dependency('absl_strings')",
    "absl_types_dep": "dependency('absl_optional')",
}

# Static archives upstream links whole from the subprojects; system libraries
# are linked as ordinary shared dependencies instead.
LINK_WHOLE_DROPPED = [
    "absl_container_lib",
    "libcrypto_lib",
    "libssl_lib",
    "libuv",
    "libsrtp3",
    "flatbuffers_lib",
]


def fail(msg):
    sys.exit("patch.py: " + msg)


def edit(path, fn):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new = fn(text)
    if new == text:
        fail(f"{path}: nothing changed (upstream moved?)")
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def sub_once(pattern, repl, text, what, flags=0):
    new, n = re.subn(pattern, repl, text, flags=flags)
    if n == 0:
        fail(f"expected text not found: {what}")
    return new


def drop_subprojects(text):
    for name in SUBPROJECTS:
        pattern = r"\n\w+_proj = subproject\(\n  '" + re.escape(name) + r"',\n.*?\n\)\n"
        text, _ = re.subn(pattern, "\n", text, flags=re.S)
    return text


def use_system_deps(text):
    def repl(m):
        var = m.group(1)
        if var not in DEPS:
            fail(f"no system dependency known for get_variable('{var}')")
        return "ms_sys_deps['" + var + "']"

    return re.sub(r"(?:libuv|openssl|libsrtp3|abseil_cpp|flatbuffers)_proj\.get_variable\('(\w+)'\)", repl, text)


def patch_root(text):
    text = sub_once(r"meson_version: '>= 1\.1\.0'", "meson_version: '>= 1.0.0'", text, "meson_version")
    for lib in LINK_WHOLE_DROPPED:
        text = sub_once(
            r"\n  \w+_proj\.get_variable\('" + re.escape(lib) + r"'\),",
            "",
            text,
            f"link_whole {lib}",
        )
    text = sub_once(
        r"\nankerl_unordered_dense_dep = dependency\('unordered_dense'\)\n",
        "\nankerl_unordered_dense_dep = declare_dependency(include_directories: include_directories('compat'))\n",
        text,
        "unordered_dense dependency",
    )
    text = drop_subprojects(text)
    if re.search(r"^(libuv|openssl|libsrtp3|abseil_cpp|flatbuffers)_proj = subproject", text, re.M):
        fail("meson.build: a wrap subproject survived")
    entries = ",\n".join(f"  '{k}': {v}" for k, v in DEPS.items())
    decl = "# System libraries (Debian) instead of wrap subprojects.\nms_sys_deps = {\n" + entries + ",\n}\n\n"
    text = sub_once(r"\n# flatbuffers schemas subdirectory\.\n", "\n" + decl + "# flatbuffers schemas subdirectory.\n", text, "fbs subdir")
    return use_system_deps(text)


def patch_libwebrtc(text):
    text = drop_subprojects(text)
    if "subproject(" in text:
        fail("deps/libwebrtc/meson.build: a subproject survived")
    return use_system_deps(text)


def patch_dtls(text):
    # OpenSSL calls the BIO callback after each operation with BIO_CB_RETURN
    # OR-ed into the operation type (e.g. BIO_CB_RETURN|BIO_CB_CTRL for
    # BIO_get_ktls_send()). Upstream returns 1 for all of those but the bare
    # BIO_CB_RETURN, so libssl believes kTLS is on and writes through a NULL
    # record buffer. Return the real result for every post-operation call.
    return sub_once(
        r"\(operationType == BIO_CB_RETURN\) \? static_cast<long>\(ret\) : 1",
        "(operationType & BIO_CB_RETURN) ? static_cast<long>(ret) : 1",
        text,
        "onSslBioOut result",
    )


def main():
    if len(sys.argv) != 3:
        fail("usage: patch.py WORKER_DIR COMPAT_DIR")
    worker, compat = sys.argv[1], sys.argv[2]
    edit(os.path.join(worker, "meson.build"), patch_root)
    edit(os.path.join(worker, "deps", "libwebrtc", "meson.build"), patch_libwebrtc)
    edit(os.path.join(worker, "src", "RTC", "DtlsTransport.cpp"), patch_dtls)
    os.makedirs(os.path.join(worker, "compat", "ankerl"), exist_ok=True)
    for name in ("srtp.h", os.path.join("ankerl", "unordered_dense.h")):
        shutil.copy(os.path.join(compat, name), os.path.join(worker, "compat", name))


if __name__ == "__main__":
    main()
