"""rasd's own table of the NVLink5 Xids 144-150: IntrInfo pattern and Error Status -> buckets.

NVIDIA's Xid Catalog (the revision pinned in catalog.py, sheet "Xid 144-150 Decode") decodes these
Xids from the message's first two registers: the IntrInfo pattern names the unit (a ``-`` bit is
not part of the pattern; drivers before R575 and from R575 on place the sub-code differently), the
Error Status bit names the error, and the row gives the recovery bucket, the investigation and the
severity. The rows were produced once from that sheet and are maintained here by hand; the message
form is ``<unit> <Fatal|NonFatal> ... Link <n> (<IntrInfo> <ErrorStatus> <debug data>...)``.
These Xids are Blackwell's (NVLink5): the decode applies there, or where the architecture is not
known.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Nvlink5Row:
    xid: int
    unit: str
    v1: str  # IntrInfo pattern, drivers before R575 (32 characters, most significant bit first)
    v2: str  # IntrInfo pattern, R575 and later
    status: int | None  # the Error Status bit; None: any
    immediate: str  # IGNORE, RESET_GPU, XID_154_EVAL
    investigatory: str
    severity: str  # Fatal, Non-fatal, Link Fatal

    def matches(self, intr: int, status: int) -> bool:
        if self.status is not None and not status & self.status and \
                not (self.status == 0 and status == 0):
            return False
        return _fits(self.v2, intr) or _fits(self.v1, intr)


def _fits(pattern: str, value: int) -> bool:
    for i, ch in enumerate(reversed(pattern)):
        if ch != "-" and ((value >> i) & 1) != int(ch):
            return False
    return True


def R(xid: int, unit: str, v1: str, v2: str, status: int | None, immediate: str,
      investigatory: str, severity: str) -> Nvlink5Row:
    return Nvlink5Row(xid, unit, v1, v2, status, immediate, investigatory, severity)


ROWS: tuple[Nvlink5Row, ...] = (
    R(144, 'SAW_MVB', '------000000----------0000100001', '------000000-------------0000001', 0x00000001, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(144, 'SAW_MVB', '------000000----------0000100001', '------000000-------------0000001', 0x00000002, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(144, 'SAW_MVB', '------000000----------0000100001', '------000000-------------0000001', 0x00000004, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(144, 'SAW_MVB', '------000000----------0000100001', '------000000-------------0000001', 0x00000008, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(144, 'SAW_MVB', '------000000----------0000100001', '------000000-------------0000001', 0x00000010, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(144, 'SAW_MVB', '------000000----------0000100001', '------000000-------------0000001', 0x00000020, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(145, 'RLW_CTRL', '------000000----------0001100010', '------000000-------------0000011', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x00000001, 'XID_154_EVAL', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x00000002, 'XID_154_EVAL', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x00000004, 'XID_154_EVAL', 'CHECK_NVLINK_FAILURE_FLOW', 'Non-fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x00000008, 'XID_154_EVAL', 'CHECK_NVLINK_FAILURE_FLOW', 'Non-fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x00000010, 'XID_154_EVAL', 'CHECK_NVLINK_FAILURE_FLOW', 'Non-fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x00000020, 'XID_154_EVAL', 'CHECK_NVLINK_FAILURE_FLOW', 'Non-fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x00000040, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x00000080, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x00000100, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x00000200, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(145, 'RLW_REMAP', '------000000----------0010000010', '------000000-------------0000100', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_RSPCOL', '------000000----------0010100010', '------000000-------------0000101', 0x00000001, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(145, 'RLW_RSPCOL', '------000000----------0010100010', '------000000-------------0000101', 0x00000002, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(145, 'RLW_RSPCOL', '------000000----------0010100010', '------000000-------------0000101', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_RXPIPE', '------000000---------00011000010', '------000000------------00000110', 0x00000001, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_RXPIPE', '------000000---------00011000010', '------000000------------00000110', 0x00000002, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_RXPIPE', '------000000---------00011000010', '------000000------------00000110', 0x00000004, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_RXPIPE', '------000000----------0011000010', '------000000-------------0000110', 0x00000008, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_RXPIPE', '------000000----------0011000010', '------000000-------------0000110', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_SRC_TRACK', '------000000----------0011100010', '------000000-------------0000111', 0x00000001, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(145, 'RLW_SRC_TRACK', '------000000----------0011100010', '------000000-------------0000111', 0x00000002, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(145, 'RLW_SRC_TRACK', '------000000----------0011100010', '------000000-------------0000111', 0x00000004, 'XID_154_EVAL', 'IGNORE', 'Non-fatal'),
    R(145, 'RLW_SRC_TRACK', '------000000----------0011100010', '------000000-------------0000111', 0x00000008, 'XID_154_EVAL', 'IGNORE', 'Non-fatal'),
    R(145, 'RLW_SRC_TRACK', '------000000----------0011100010', '------000000-------------0000111', 0x00000010, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(145, 'RLW_SRC_TRACK', '------000000----------0011100010', '------000000-------------0000111', 0x00000020, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(145, 'RLW_SRC_TRACK', '------000000----------0011100010', '------000000-------------0000111', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(145, 'RLW_TAGSTATE', '------000000----------0100000010', '------000000-------------0001000', 0x00000001, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(145, 'RLW_TAGSTATE', '------000000----------0100000010', '------000000-------------0001000', 0x00000002, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(145, 'RLW_TAGSTATE', '------000000----------0100000010', '------000000-------------0001000', 0x00010000, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(145, 'RLW_TAGSTATE', '------000000----------0100000010', '------000000-------------0001000', 0x00020000, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(145, 'RLW_TAGSTATE', '------000000----------0100000010', '------000000-------------0001000', 0x00100000, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(145, 'RLW_TAGSTATE', '------000000----------0100000010', '------000000-------------0001000', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(146, 'TLW_CTRL', '------000000----------0100100011', '------000000-------------0001001', 0x00000001, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(146, 'TLW_CTRL', '------000000----------0100100011', '------000000-------------0001001', 0x00000002, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(146, 'TLW_CTRL', '------000000----------0100100011', '------000000-------------0001001', 0x00000004, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(146, 'TLW_CTRL', '------000000----------0100100011', '------000000-------------0001001', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(146, 'TLW_RX/TLW_RX_PIPE0', '------000000----------0101000011', '------000000-------------0001010', 0x00000001, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(146, 'TLW_RX/TLW_RX_PIPE0', '------000000----------0101000011', '------000000-------------0001010', 0x00000002, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(146, 'TLW_RX/TLW_RX_PIPE0', '------000000----------0101000011', '------000000-------------0001010', 0x00000004, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(146, 'TLW_RX/TLW_RX_PIPE0', '------000000----------0101000011', '------000000-------------0001010', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(146, 'TLW_RX/TLW_RX_PIPE1', '------000000----------0101000011', '------000000-------------0001011', 0x00000001, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(146, 'TLW_RX/TLW_RX_PIPE1', '------000000----------0101000011', '------000000-------------0001011', 0x00000002, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(146, 'TLW_RX/TLW_RX_PIPE1', '------000000----------0101000011', '------000000-------------0001011', 0x00000004, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(146, 'TLW_RX/TLW_RX_PIPE1', '------000000----------0101000011', '------000000-------------0001011', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(146, 'TLW_TX/TLW_TX_PIPE0', '------000000----------0101100011', '------000000-------------0001100', 0x00000001, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(146, 'TLW_TX/TLW_TX_PIPE0', '------000000----------0101100011', '------000000-------------0001100', 0x00000002, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(146, 'TLW_TX/TLW_TX_PIPE0', '------000000----------0101100011', '------000000-------------0001100', 0x00000004, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(146, 'TLW_TX/TLW_TX_PIPE0', '------000000----------0101100011', '------000000-------------0001100', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(146, 'TLW_TX/TLW_TX_PIPE1', '------000000----------0101100011', '------000000-------------0001101', 0x00000001, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(146, 'TLW_TX/TLW_TX_PIPE1', '------000000----------0101100011', '------000000-------------0001101', 0x00000002, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(146, 'TLW_TX/TLW_TX_PIPE1', '------000000----------0101100011', '------000000-------------0001101', 0x00000004, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(146, 'TLW_TX/TLW_TX_PIPE1', '------000000----------0101100011', '------000000-------------0001101', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(147, 'TREX', '------000000----------0110000100', '------000000-------------0001110', 0x00000001, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(147, 'TREX', '------000000----------0110000100', '------000000-------------0001110', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(148, 'NVLPW_CTRL/NVLPW', '------000000----------0000000101', '------000000-------------0001111', 0x80000000, 'IGNORE', 'CONTACT_SUPPORT', 'Non-fatal'),
    R(149, 'NETIR/NETIR_INT', '------000000----------0000000110', '------000000-------------0011000', None, 'RESET_GPU', 'SYMPATHETIC_REPORT_SOLO', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------000000----------0111000110', '------000000-------------0010001', None, 'RESET_GPU', 'SYMPATHETIC_REPORT_SOLO', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------000001----------0111000110', '------000001-------------0010001', None, 'RESET_GPU', 'REPORT_ISSUE (if seen >1 per day)', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------000010----------0111000110', '------000010-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_LINK_SI', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------000100----------0111000110', '------000100-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_LINK_SI', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------001010----------0111000110', '------001010-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_LINK_SI', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------001111----------0111000110', '------001111-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_SW_USER', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------010000----------0111000110', '------010000-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_SW_USER_LINK_SI', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------010001----------0111000110', '------010001-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_SW_USER', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------010010----------0111000110', '------010010-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_SW_USER_LINK_SI', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------010101----------0111000110', '------010101-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_PEER_DEVICE', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------010110----------0111000110', '------010110-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_SW_USER', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------100000----------0111000110', '------100000-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_PEER_DEVICE', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------100001----------0111000110', '------100001-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_PEER_DEVICE', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------100010----------0111000110', '------100010-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_PEER_DEVICE', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------100011----------0111000110', '------100011-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_PEER_DEVICE', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------100100----------0111000110', '------100100-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_PEER_DEVICE', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------100101----------0111000110', '------100101-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_PEER_DEVICE', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------100110----------0111000110', '------100110-------------0010001', None, 'IGNORE', 'INVESTIGATE_SW/USER', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------101000----------0111000110', '------101000-------------0010001', None, 'IGNORE', 'INVESTIGATE_HOST', 'Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------101010----------0111000110', '------101010-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_LINK_SI_AND_CABLES', 'Link Fatal'),
    R(149, 'NETIR_LINK_EVT/NETIR_LINK_DOWN', '------101011----------0111000110', '------101011-------------0010001', None, 'RESET_GPU', 'INVESTIGATE_LINK_SI_AND_CABLES', 'Link Fatal'),
    R(149, 'NETIR_BER_EVENT', '------000000----------1000100110', '------000000-------------0010011', 0x00000000, 'IGNORE', 'INVESTIGATE_LINK_SI_AND_CABLES', 'Non-fatal'),
    R(149, 'NETIR_BER_EVENT', '------000000----------1000100110', '------000000-------------0010011', 0x00000001, 'IGNORE', 'INVESTIGATE_LINK_SI_AND_CABLES', 'Non-fatal'),
    R(149, 'NETIR_BER_EVENT', '------000000----------1000100110', '------000000-------------0010011', 0x00000002, 'IGNORE', 'INVESTIGATE_LINK_SI_AND_CABLES', 'Non-fatal'),
    R(149, 'NETIR_BER_EVENT', '------000000----------1000100110', '------000000-------------0010011', 0x00000003, 'IGNORE', 'INVESTIGATE_LINK_SI_AND_CABLES', 'Non-fatal'),
    R(149, 'NETIR_MFDE_EVENT', '------000000----------1001000110', '------000000-------------0010100', 0x00000001, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(149, 'NETIR_MFDE_EVENT', '------000000----------1001000110', '------000000-------------0010100', 0x00000003, 'IGNORE', 'IGNORE', 'Non-fatal'),
    R(149, 'NETIR_MFDE_EVENT', '------000000----------1001000110', '------000000-------------0010100', 0x00000004, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(149, 'NETIR_MFDE_EVENT', '------000000----------1001000110', '------000000-------------0010100', 0x00000005, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(149, 'NETIR_MFDE_EVENT', '------000000----------1001000110', '------000000-------------0010100', 0x00000007, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(150, 'MSE Degraded', '------000000----------0000000000', '------000000-------------0000000', 0x00000000, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(150, 'MSE Degraded', '------000000----------0000000000', '------000000-------------0000000', 0xffffffff, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
    R(150, 'MSE_WATCHDOG', '------000000----------0000000000', '------000000-------------0000000', 0x00000000, 'RESET_GPU', 'CONTACT_SUPPORT', 'Fatal'),
)
_ORDER = {"RESET_GPU": 2, "XID_154_EVAL": 1, "IGNORE": 0}


def decode(xid: int, registers: tuple[int, ...] | None) -> Nvlink5Row | None:
    """The most severe row of ``xid`` that the IntrInfo and Error Status registers match."""
    if not registers or len(registers) < 2:
        return None
    intr, status = registers[0], registers[1]
    hits = [r for r in ROWS if r.xid == xid and r.matches(intr, status)]
    return max(hits, key=lambda r: _ORDER.get(r.immediate, 0), default=None)
