#!/usr/bin/env python3
"""Every module a target imports must be one it declares in Package.swift.

SwiftPM's `--explicit-target-dependency-import-check error` lets a target import a module that
reaches it only through another dependency (ObjmountCLI importing S3Signing through S3Storage)
and does not look at products at all. This script is stricter: a target may import only

  - the targets in its own `dependencies:` list,
  - the modules of the `.product(name:package:)` entries there (PRODUCT_MODULES),
  - system and toolchain modules (SYSTEM_MODULES).

It reads Package.swift as text (no `swift package dump-package`: no build, no network) and every
`import X` / `@testable import X` / `import struct X.Y` in the `.swift` files of each target's
directory. Prints `file:line: ...` for each offending import and exits 1 if there is one.

Usage: scripts/check-imports.py [package-directory]   (default: the repository root)
"""

import os
import re
import sys

# Modules that come with the toolchain or the OS, never declared in Package.swift.
SYSTEM_MODULES = {
    "Swift", "_Concurrency", "_StringProcessing", "RegexBuilder", "Observation", "Distributed",
    "Glibc", "Musl", "Darwin", "WinSDK", "Android", "Bionic", "WASILibc", "ucrt", "CRT", "SwiftGlibc",
    "Foundation", "FoundationEssentials", "FoundationInternationalization", "FoundationNetworking",
    "FoundationXML", "Dispatch", "Synchronization", "XCTest", "Testing", "os", "SwiftShims",
}

# Products whose module name differs from the product name, or that bring several modules.
# A product not listed here provides the module of the same name.
PRODUCT_MODULES = {
    "ArgumentParser": {"ArgumentParser"},
    "AsyncHTTPClient": {"AsyncHTTPClient"},
    "Crypto": {"Crypto"},
    "_CryptoExtras": {"_CryptoExtras"},
    "PropertyBased": {"PropertyBased"},
}

IMPORT_RE = re.compile(
    r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*"  # attributes: @testable, @preconcurrency, @_exported, @_implementationOnly
    r"(?:(?:public|package|internal|fileprivate|private)\s+)?"  # access-level imports
    r"import\s+"
    r"(?:(?:typealias|struct|class|enum|protocol|let|var|func)\s+)?"  # scoped imports
    r"([A-Za-z_][A-Za-z0-9_]*)"
)


def strip_comments(text):
    """Package.swift without `//` and `/* */` comments (string literals kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def balanced(text, start):
    """The text from `start` (an opening parenthesis or bracket) to its matching close."""
    pairs = {"(": ")", "[": "]"}
    stack, i = [], start
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in pairs:
            stack.append(pairs[c])
        elif c in ")]":
            if not stack or stack.pop() != c:
                raise ValueError(f"unbalanced {c!r} at offset {i}")
            if not stack:
                return text[start:i + 1]
        i += 1
    raise ValueError(f"unclosed bracket at offset {start}")


def string_argument(call, name):
    m = re.search(r"\b" + name + r'\s*:\s*"([^"]*)"', call)
    return m.group(1) if m else None


def parse_targets(manifest):
    """[(name, kind, directory, declared modules)] of every target in Package.swift."""
    text = strip_comments(manifest)
    targets = []
    kinds = r"(target|executableTarget|testTarget|plugin|macro|systemLibrary|binaryTarget)"
    for m in re.finditer(r"\.\s*" + kinds + r"\s*\(", text):
        kind = m.group(1)
        call = balanced(text, m.end() - 1)
        name = string_argument(call, "name")
        if name is None:
            continue
        path = string_argument(call, "path")
        if path is None:
            path = os.path.join("Tests" if kind == "testTarget" else ("Plugins" if kind == "plugin" else "Sources"), name)
        declared = set()
        d = re.search(r"\bdependencies\s*:\s*\[", call)
        if d:
            deps = balanced(call, d.end() - 1)[1:-1]
            for p in re.finditer(r"\.product\s*\(", deps):
                product = string_argument(balanced(deps, p.end() - 1), "name")
                declared |= PRODUCT_MODULES.get(product, {product})
            # Target dependencies: bare strings, `.target(name:)`, `.byName(name:)`.
            without_products = re.sub(r"\.product\s*\([^)]*\)", "", deps)
            for t in re.finditer(r'\.(?:target|byName)\s*\(\s*name\s*:\s*"([^"]+)"', without_products):
                declared.add(t.group(1))
            without_calls = re.sub(r"\.\w+\s*\([^)]*\)", "", without_products)
            declared |= set(re.findall(r'"([^"]+)"', without_calls))
        if kind == "plugin":
            declared.add("PackagePlugin")  # what every package plugin is built against
        targets.append((name, kind, path, declared))
    return targets


def swift_files(directory):
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if f.endswith(".swift"):
                yield os.path.join(root, f)


def imports(path):
    """(line number, module) of each import statement of a Swift file."""
    in_block_comment = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if in_block_comment:
                if "*/" not in line:
                    continue
                line = line.split("*/", 1)[1]
                in_block_comment = False
            if line.lstrip().startswith("/*") and "*/" not in line:
                in_block_comment = True
                continue
            m = IMPORT_RE.match(line)
            if m:
                yield number, m.group(1)


def main(argv):
    root = os.path.abspath(argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    with open(os.path.join(root, "Package.swift"), encoding="utf-8") as f:
        targets = parse_targets(f.read())
    if not targets:
        print("check-imports: no targets found in Package.swift", file=sys.stderr)
        return 2
    problems = 0
    for name, _kind, path, declared in targets:
        directory = os.path.join(root, path)
        if not os.path.isdir(directory):
            print(f"{path}: directory of target {name} does not exist", file=sys.stderr)
            problems += 1
            continue
        for file in swift_files(directory):
            for line, module in imports(file):
                if module == name or module in SYSTEM_MODULES or module in declared:
                    continue
                rel = os.path.relpath(file, root)
                print(f"{rel}:{line}: target {name} imports {module}, which its dependencies in Package.swift do not declare")
                problems += 1
    if problems:
        print(f"check-imports: {problems} undeclared import(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
