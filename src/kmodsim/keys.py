"""Which key signed a module, and which keys a kernel trusts: enough of DER to compare the two.

The kernel finds the key of a module's signature by the asymmetric key id of its PKCS#7
SignerInfo — the signer's issuer and serial number (crypto/asymmetric_keys/pkcs7_parser.c,
``pkcs7_sig_note_issuer()``/``pkcs7_sig_note_serial()``, ``asymmetric_key_generate_id()``) — among
the X.509 certificates built into vmlinux (certs/system_certificates.S, ``system_certificate_list``:
CONFIG_MODULE_SIG_KEY, the build's signing key, and CONFIG_SYSTEM_TRUSTED_KEYS), which
``x509_cert_parse()`` identifies the same way. A key it does not hold is -ENOKEY
(``module_sig_check()``: "module with unavailable key"), which, signatures not being enforced,
is tainted as an unsigned module.

A :data:`KeyId` is ``(issuer, serial)``: the DER of the issuer Name, the serial's content octets.
"""

from __future__ import annotations

from .elf import ImageBytes
from .module import MODULE_SIG_STRING

KeyId = tuple[bytes, bytes]

# include/linux/module_signature.h: struct module_signature (12 bytes before the marker)
_SIG_HEADER = 12


def _tlv(data: bytes, off: int, end: int) -> tuple[int, int, int]:
    """The DER element at ``off``: (tag, start of its content, end of its content). Raises
    ValueError past ``end`` or on an encoding DER does not allow here."""
    if off + 2 > end:
        raise ValueError("truncated")
    tag, n = data[off], data[off + 1]
    p = off + 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or p + k > end:
            raise ValueError("bad length")
        n = int.from_bytes(data[p:p + k], "big")
        p += k
    if p + n > end:
        raise ValueError("truncated")
    return tag, p, p + n


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements inside a constructed one: (tag, element start, content start, content end)."""
    out = []
    off = start
    while off < end:
        tag, s, e = _tlv(data, off, end)
        out.append((tag, off, s, e))
        off = e
    return out


def pkcs7_signer(blob: bytes) -> KeyId | None:
    """The issuer and serial of the first SignerInfo of a PKCS#7 ``SignedData`` (RFC 2315), None
    when it names its key otherwise (a subjectKeyIdentifier) or is not one."""
    try:
        _tag, s, e = _tlv(blob, 0, len(blob))  # ContentInfo
        ci = _children(blob, s, e)
        _t, _o, s, e = ci[1]  # [0] EXPLICIT content
        _t, _o, s, e = _children(blob, s, e)[0]  # SignedData
        signer_infos = _children(blob, s, e)[-1]  # signerInfos SET: the last element
        _t, _o, s, e = _children(blob, signer_infos[2], signer_infos[3])[0]  # the first SignerInfo
        sid = _children(blob, s, e)[1]
        if sid[0] != 0x30:  # [0] subjectKeyIdentifier
            return None
        issuer, serial = _children(blob, sid[2], sid[3])[:2]
        return bytes(blob[issuer[1]:issuer[3]]), bytes(blob[serial[2]:serial[3]])
    except (ValueError, IndexError):
        return None


def module_signer(image: ImageBytes) -> KeyId | None:
    """The key a module's appended signature names (``mod_verify_sig()``'s layout: the PKCS#7
    blob, ``struct module_signature``, the marker), None for an unsigned module or a signature
    that names no issuer and serial."""
    n = len(MODULE_SIG_STRING)
    size = len(image)
    if size < n + _SIG_HEADER or bytes(image[size - n:]) != MODULE_SIG_STRING:
        return None
    header = bytes(image[size - n - _SIG_HEADER:size - n])
    sig_len = int.from_bytes(header[8:12], "big")
    end = size - n - _SIG_HEADER
    if sig_len > end:
        return None
    return pkcs7_signer(bytes(image[end - sig_len:end]))


# an X.509 v3 certificate: SEQUENCE { SEQUENCE (tbsCertificate) { [0] { INTEGER 2 } ...
_CERT_VERSION = b"\xa0\x03\x02\x01\x02"


def certificate_ids(data: bytes) -> frozenset[KeyId]:
    """The (issuer, serial) of every X.509 v3 certificate found in ``data`` (a vmlinux: its
    ``system_certificate_list``, DER certificates one after the other)."""
    found = set()
    i = data.find(_CERT_VERSION)
    while i >= 0:
        start = i - 8  # 30 82 LL LL 30 82 LL LL: the certificate and its tbsCertificate, long forms
        if start >= 0 and data[start] == 0x30 and data[start + 4] == 0x30:
            try:
                _t, s, e = _tlv(data, start, len(data))
                _t, ts, te = _tlv(data, s, e)
                tbs = _children(data, ts, te)
                serial, issuer = tbs[1], tbs[3]
                if serial[0] == 0x02 and issuer[0] == 0x30:
                    found.add((bytes(data[issuer[1]:issuer[3]]), bytes(data[serial[2]:serial[3]])))
            except (ValueError, IndexError):
                pass
        i = data.find(_CERT_VERSION, i + 1)
    return frozenset(found)
