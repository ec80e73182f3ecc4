"""Docker image references (the grammar of distribution/reference), standard library only.

scripts/launch is one file users copy, so it cannot import this module: it carries the block between
the `reference grammar` markers below verbatim (Python 3.8 syntax), and
tests/unit/test_reference.py asserts that both copies are identical and agree on a corpus.
"""

from __future__ import annotations

import ipaddress
import re

# ---- reference grammar: begin (kept identical in kerastack/reference.py and scripts/launch)
REFERENCE_NAME_MAX = 255  # Docker's limit on a repository name, registry host included
_REF_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")
_REF_PORT = re.compile(r"[0-9]{1,5}\Z")
_REF_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_REF_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_REF_DIGEST = re.compile(r"(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})\Z")


class BadReference(ValueError):
    """A malformed image reference; the message names the part that is wrong and why."""


def check_registry_host(host):
    """A registry host: DNS labels, or an IPv4 or [IPv6] address, with an optional port 1-65535."""
    if not host:
        raise BadReference("the registry host is empty")
    if host.startswith("["):
        address, bracket, port = host[1:].partition("]")
        if not bracket:
            raise BadReference("registry host %r: an IPv6 address needs its closing ']'" % host)
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise BadReference("registry host %r: %r is not an IPv6 address" % (host, address)) from None
        if port and not port.startswith(":"):
            raise BadReference("registry host %r: only ':PORT' may follow ']'" % host)
        port = port[1:] if port else None
    else:
        name, colon, port = host.partition(":")
        port = port if colon else None
        for label in name.split("."):
            if not label:
                raise BadReference("registry host %r has an empty DNS label (two dots, or a dot at an end)" % host)
            if len(label) > 63 or not _REF_HOST_LABEL.match(label):
                raise BadReference("registry host %r: DNS label %r must be 1-63 ASCII letters, digits or inner '-'" % (host, label[:70]))
    if port is not None and (not _REF_PORT.match(port) or not 1 <= int(port) <= 65535):
        raise BadReference("registry host %r: port %r is not a number from 1 to 65535" % (host, port[:20]))


def check_repository_path(path):
    """The path after the host: lowercase components joined by '/', each [a-z0-9] with '.', '_', '__' or '-' inside."""
    for component in path.split("/"):
        if not _REF_PATH_COMPONENT.match(component):
            raise BadReference(
                "repository %r: component %r must be lowercase ASCII letters and digits, "
                "separated inside by '.', '_', '__' or '-'" % (path[:300], component[:80])
            )


def split_host(name):
    """(host or '', path): the first component is a host when it has a '.' or ':', or is 'localhost'."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return "", name


def check_name(name):
    """An image name without tag or digest: [HOST[:PORT]/]PATH, at most 255 characters."""
    if "://" in name:
        raise BadReference("%r is a URL: write the image as HOST/PATH[:TAG][@DIGEST], without a scheme" % name[:300])
    if not name:
        raise BadReference("the image name is empty")
    if len(name) > REFERENCE_NAME_MAX:
        raise BadReference("image name is %d characters; Docker allows at most %d, host included" % (len(name), REFERENCE_NAME_MAX))
    host, path = split_host(name)
    if host:
        check_registry_host(host)
    check_repository_path(path)


def check_tag(tag):
    if not _REF_TAG.match(tag):
        raise BadReference("tag %r must be 1-128 ASCII letters, digits, '_', '.' or '-', not starting with '.' or '-'" % tag[:200])


def check_digest(digest):
    if not _REF_DIGEST.match(digest):
        raise BadReference("digest %r must be sha256: and 64 lowercase hex digits (or sha512: and 128)" % digest[:200])


def parse_reference(text):
    """(name, tag or None, digest or None) of NAME[:TAG][@DIGEST]; raises BadReference naming the bad part."""
    if "://" in text:
        raise BadReference("%r is a URL: write the image as HOST/PATH[:TAG][@DIGEST], without a scheme" % text[:300])
    rest, at, digest = text.partition("@")
    if at:
        check_digest(digest)
    name, tag = rest, None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        name, tag = rest[:colon], rest[colon + 1 :]
        check_tag(tag)
    check_name(name)
    return name, tag, (digest if at else None)


# ---- reference grammar: end


def check_repository(host: str, repository: str) -> None:
    """A registry host and a repository path on it, as [registry] in versions.toml names them."""
    check_registry_host(host)
    check_repository_path(repository)
    if len(host) + 1 + len(repository) > REFERENCE_NAME_MAX:
        raise BadReference(f"{host}/{repository} is {len(host) + 1 + len(repository)} characters; Docker allows at most {REFERENCE_NAME_MAX}, host included")
