"""rasd's own Xid table: every code of NVIDIA's Xid Catalog with its resolution buckets.

The bucket names are NVIDIA's (Immediate Action and Investigatory Action columns of the catalog);
the descriptions are rasd's own one-liners. The table was produced once from the catalog revision
pinned below and is maintained here by hand; classify.py turns buckets into rungs.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

# NVIDIA Xid Catalog (Xid-Catalog.xlsx), the revision NVSentinel pins. In it Xids 162-172 carry no
# resolution bucket; rasd decides those itself (see classify.py).
CATALOG_SHA256 = "7f70ce9684be0c9d98a367770341ccc1d8bca4465cebe42dab7e23d57df5d5a5"

# Immediate Action buckets
IGNORE = "IGNORE"
RESTART_APP = "RESTART_APP"
RESET_GPU = "RESET_GPU"
RESTART_VM = "RESTART_VM"
RESTART_BM = "RESTART_BM"
CONTACT_SUPPORT = "CONTACT_SUPPORT"
CHECK_MECHANICALS = "CHECK_MECHANICALS"
UPDATE_SWFW = "UPDATE_SWFW"
CHECK_UVM = "CHECK_UVM"
XID_154 = "XID_154"
WORKFLOW_XID_45 = "WORKFLOW_XID_45"
WORKFLOW_XID_48 = "WORKFLOW_XID_48"
WORKFLOW_NVLINK_ERR = "WORKFLOW_NVLINK_ERR"
WORKFLOW_NVLINK5_ERR = "WORKFLOW_NVLINK5_ERR"
# Investigatory buckets that change the decision
WORKFLOW_XID_13 = "WORKFLOW_XID_13"
WORKFLOW_XID_31 = "WORKFLOW_XID_31"


@dataclass(frozen=True, slots=True)
class XidEntry:
    code: int
    mnemonic: str
    immediate: str  # "" where the pinned revision has no bucket
    investigatory: str  # "" where the catalog gives none
    description: str
    buckets: tuple[str, ...]  # the non-empty ones of immediate and investigatory


def X(code: int, mnemonic: str, immediate: str, investigatory: str, description: str) -> XidEntry:
    return XidEntry(code, mnemonic, immediate, investigatory, description,
                    tuple(b for b in (immediate, investigatory) if b))


_TABLE: tuple[XidEntry, ...] = (
    X(1, 'ROBUST_CHANNEL_FIFO_ERROR_FIFO_METHOD', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(2, 'ROBUST_CHANNEL_FIFO_ERROR_SW_METHOD', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(3, 'ROBUST_CHANNEL_FIFO_ERROR_UNK_METHOD', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(4, 'ROBUST_CHANNEL_FIFO_ERROR_CHANNEL_BUSY', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(5, 'ROBUST_CHANNEL_FIFO_ERROR_RUNOUT_OVERFLOW', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(6, 'ROBUST_CHANNEL_FIFO_ERROR_PARSE_ERR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(7, 'ROBUST_CHANNEL_FIFO_ERROR_PTE_ERR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(8, 'ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT', 'RESTART_APP', 'CONTACT_SUPPORT', 'channel stopped making progress (FIFO idle timeout)'),
    X(9, 'ROBUST_CHANNEL_GR_ERROR_INSTANCE', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(10, 'ROBUST_CHANNEL_GR_ERROR_SINGLE_STEP', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(11, 'ROBUST_CHANNEL_GR_ERROR_MISSING_HW', 'RESTART_APP', 'CHECK_APP/CUDA', 'bad or corrupted command stream from the application'),
    X(12, 'ROBUST_CHANNEL_GR_ERROR_SW_METHOD', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(13, 'ROBUST_CHANNEL_GR_EXCEPTION', 'RESTART_APP', 'WORKFLOW_XID_13', 'graphics engine exception in a kernel (often an out-of-bounds access)'),
    X(14, 'ROBUST_CHANNEL_FAKE_ERROR', 'IGNORE', 'CONTACT_SUPPORT', 'not emitted by current drivers'),
    X(15, 'ROBUST_CHANNEL_SCANLINE_TIMEOUT', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(16, 'ROBUST_CHANNEL_VBLANK_CALLBACK_TIMEOUT', 'CONTACT_SUPPORT', 'CONTACT_SUPPORT', 'not emitted by current drivers'),
    X(17, 'ROBUST_CHANNEL_PARAMETER_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(18, 'ROBUST_CHANNEL_BUS_MASTER_TIMEOUT_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(19, 'ROBUST_CHANNEL_DISP_MISSED_NOTIFIER', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(20, 'ROBUST_CHANNEL_MPEG_ERROR_SW_METHOD', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(21, 'ROBUST_CHANNEL_ME_ERROR_SW_METHOD', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(22, 'ROBUST_CHANNEL_VP_ERROR_SW_METHOD', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(23, 'ROBUST_CHANNEL_RC_LOGGING_ENABLED', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(24, 'ROBUST_CHANNEL_GR_SEMAPHORE_TIMEOUT', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(25, 'ROBUST_CHANNEL_GR_ILLEGAL_NOTIFY', 'RESTART_APP', 'CHECK_APP/CUDA', "illegal command in the application's command stream"),
    X(26, 'ROBUST_CHANNEL_FIFO_ERROR_FBISTATE_TIMEOUT', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(27, 'ROBUST_CHANNEL_VP_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(28, 'ROBUST_CHANNEL_VP2_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(29, 'ROBUST_CHANNEL_BSP_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(30, 'ROBUST_CHANNEL_BAD_ADDR_ACCESS', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(31, 'ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT', 'RESTART_APP', 'WORKFLOW_XID_31', 'GPU memory page fault (MMU)'),
    X(32, 'ROBUST_CHANNEL_PBDMA_ERROR', 'RESTART_APP', 'CHECK_APP/CUDA', 'bad or corrupted command stream seen by the DMA engine'),
    X(33, 'ROBUST_CHANNEL_SEC_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(34, 'ROBUST_CHANNEL_MSVLD_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(35, 'ROBUST_CHANNEL_MSPDEC_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(36, 'ROBUST_CHANNEL_MSPPP_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(37, 'ROBUST_CHANNEL_FECS_ERR_UNIMP_FIRMWARE_METHOD', 'IGNORE', 'CHECK_APP/CUDA', 'driver firmware: unimplemented method'),
    X(38, 'ROBUST_CHANNEL_FECS_ERR_WATCHDOG_TIMEOUT', 'IGNORE', 'CONTACT_SUPPORT', 'driver firmware watchdog expired'),
    X(39, 'ROBUST_CHANNEL_CE0_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 0 fault'),
    X(40, 'ROBUST_CHANNEL_CE1_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 1 fault'),
    X(41, 'ROBUST_CHANNEL_CE2_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 2 fault'),
    X(42, 'ROBUST_CHANNEL_VIC_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(43, 'ROBUST_CHANNEL_RESETCHANNEL_VERIF_ERROR', 'IGNORE', 'CONTACT_SUPPORT', 'a channel was reset after it stopped processing'),
    X(44, 'ROBUST_CHANNEL_GR_FAULT_DURING_CTXSW', 'IGNORE', 'CONTACT_SUPPORT', 'graphics engine fault while switching contexts'),
    X(45, 'ROBUST_CHANNEL_PREEMPTIVE_REMOVAL', 'WORKFLOW_XID_45', 'RESTART_FM', 'channel torn down after an abort or an earlier error'),
    X(46, 'ROBUST_CHANNEL_GPU_TIMEOUT_ERROR', 'RESET_GPU', 'CONTACT_SUPPORT', 'GPU stopped processing (timeout)'),
    X(47, 'ROBUST_CHANNEL_NVENC0_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(48, 'ROBUST_CHANNEL_GPU_ECC_DBE', 'WORKFLOW_XID_48', 'WORKFLOW_XID_48', 'uncorrectable (double-bit) ECC error'),
    X(49, 'SILENT_RUNNING_CONSTANT_LEVEL_SET_BY_REGISTRY', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(50, 'SILENT_RUNNING_LEVEL_TRANSITION_DUE_TO_RC_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(51, 'SILENT_RUNNING_STRESS_TEST_FAILURE', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(52, 'SILENT_RUNNING_LEVEL_TRANS_DUE_TO_TEMP_RISE', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(53, 'SILENT_RUNNING_TEMP_REDUCED_CLOCKING', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(54, 'SILENT_RUNNING_PWR_REDUCED_CLOCKING', 'CHECK_MECHANICALS', 'CONTACT_SUPPORT', 'board auxiliary power missing or loose'),
    X(55, 'SILENT_RUNNING_TEMPERATURE_READ_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(56, 'DISPLAY_CHANNEL_EXCEPTION', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(57, 'FB_LINK_TRAINING_FAILURE_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(58, 'FB_MEMORY_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(59, 'PMU_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(60, 'ROBUST_CHANNEL_SEC2_ERROR', 'RESTART_APP', 'INVESTIGATE_SW', 'video processor (SEC2) exception'),
    X(61, 'PMU_BREAKPOINT', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(62, 'PMU_HALT_ERROR', 'RESET_GPU', 'CONTACT_SUPPORT', 'internal micro-controller (PMU) halted'),
    X(63, 'INFOROM_DRAM_RETIREMENT_EVENT', 'IGNORE', 'IGNORE', 'memory row remapped or page retired (ECC bookkeeping)'),
    X(64, 'INFOROM_DRAM_RETIREMENT_FAILURE', 'RESET_GPU', 'CONTACT_SUPPORT', 'memory row remap or page retirement failed'),
    X(65, 'ROBUST_CHANNEL_NVENC1_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(66, 'ROBUST_CHANNEL_FECS_ERR_REG_ACCESS_VIOLATION', 'IGNORE', 'INVESTIGATE_SW', 'driver made an illegal register access'),
    X(67, 'ROBUST_CHANNEL_FECS_ERR_VERIF_VIOLATION', 'IGNORE', 'CONTACT_SUPPORT', 'driver failed a verification check'),
    X(68, 'ROBUST_CHANNEL_NVDEC0_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'video decoder 0 fault'),
    X(69, 'ROBUST_CHANNEL_GR_CLASS_ERROR', 'RESTART_APP', 'CHECK_APP/CUDA', 'graphics engine class error'),
    X(70, 'ROBUST_CHANNEL_CE3_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 3 fault'),
    X(71, 'ROBUST_CHANNEL_CE4_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 4 fault'),
    X(72, 'ROBUST_CHANNEL_CE5_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 5 fault'),
    X(73, 'ROBUST_CHANNEL_NVENC2_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(74, 'NVLINK_ERROR', 'WORKFLOW_NVLINK_ERR', 'CONTACT_SUPPORT', 'NVLink error on a link to a peer GPU or NVSwitch'),
    X(75, 'ROBUST_CHANNEL_CE6_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 6 fault'),
    X(76, 'ROBUST_CHANNEL_CE7_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 7 fault'),
    X(77, 'ROBUST_CHANNEL_CE8_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 8 fault'),
    X(78, 'VGPU_START_ERROR', 'UPDATE_SWFW', 'UPDATE_SWFW', 'vGPU could not start (version or type mismatch)'),
    X(79, 'ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS', 'RESTART_BM', 'CONTACT_SUPPORT', 'GPU fell off the bus (not reachable over PCIe)'),
    X(80, 'PBDMA_PUSHBUFFER_CRC_MISMATCH', 'RESTART_APP', 'CHECK_APP/CUDA', 'data sent to the GPU arrived corrupted (push buffer CRC)'),
    X(81, 'ROBUST_CHANNEL_VGA_SUBSYSTEM_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(82, 'ROBUST_CHANNEL_NVJPG0_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'JPEG decoder 0 fault'),
    X(83, 'ROBUST_CHANNEL_NVDEC1_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'video decoder 1 fault'),
    X(84, 'ROBUST_CHANNEL_NVDEC2_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'video decoder 2 fault'),
    X(85, 'ROBUST_CHANNEL_CE9_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 9 fault'),
    X(86, 'ROBUST_CHANNEL_OFA0_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'optical flow accelerator 0 fault'),
    X(87, 'NVTELEMETRY_DRIVER_REPORT', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(88, 'ROBUST_CHANNEL_NVDEC3_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'video decoder 3 fault'),
    X(89, 'ROBUST_CHANNEL_NVDEC4_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'video decoder 4 fault'),
    X(90, 'LTC_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(91, 'RESERVED_XID', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(92, 'EXCESSIVE_SBE_INTERRUPTS', 'IGNORE', 'CONTACT_SUPPORT', 'single-bit ECC error rate is high'),
    X(93, 'INFOROM_ERASE_LIMIT_EXCEEDED', 'IGNORE', 'CONTACT_SUPPORT', 'InfoROM wear limit exceeded (non-fatal)'),
    X(94, 'ROBUST_CHANNEL_CONTAINED_ERROR', 'RESTART_APP', 'IGNORE_SYMPATHETIC', 'memory error contained to one application'),
    X(95, 'ROBUST_CHANNEL_UNCONTAINED_ERROR', 'RESET_GPU', 'IGNORE_SYMPATHETIC', 'memory error not contained: every application on the GPU affected'),
    X(96, 'ROBUST_CHANNEL_NVDEC5_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'video decoder 5 fault'),
    X(97, 'ROBUST_CHANNEL_NVDEC6_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'video decoder 6 fault'),
    X(98, 'ROBUST_CHANNEL_NVDEC7_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'video decoder 7 fault'),
    X(99, 'ROBUST_CHANNEL_NVJPG1_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'JPEG decoder 1 fault'),
    X(100, 'ROBUST_CHANNEL_NVJPG2_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'JPEG decoder 2 fault'),
    X(101, 'ROBUST_CHANNEL_NVJPG3_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'JPEG decoder 3 fault'),
    X(102, 'ROBUST_CHANNEL_NVJPG4_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'JPEG decoder 4 fault'),
    X(103, 'ROBUST_CHANNEL_NVJPG5_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'JPEG decoder 5 fault'),
    X(104, 'ROBUST_CHANNEL_NVJPG6_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'JPEG decoder 6 fault'),
    X(105, 'ROBUST_CHANNEL_NVJPG7_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'JPEG decoder 7 fault'),
    X(106, 'SMBPBI_TEST_MESSAGE', 'IGNORE', 'IGNORE', 'SMBPBI test message'),
    X(107, 'SMBPBI_TEST_MESSAGE_SILENT', 'IGNORE', 'IGNORE', 'SMBPBI test message (silent)'),
    X(108, 'NVLINK_REMOTE_TRANSLATION_ERROR', 'IGNORE', 'XID_137_FLOW', 'NVLink remote translation error'),
    X(109, 'ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR', 'RESET_GPU', 'CONTACT_SUPPORT', 'context switch timed out'),
    X(110, 'SEC_FAULT_ERROR', 'RESET_GPU', 'INVESTIGATE_SW', 'security fault'),
    X(111, 'BUNDLE_ERROR_EVENT', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(112, 'DISP_SUPERVISOR_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(113, 'DP_LT_FAILURE', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(114, 'HEAD_RG_UNDERFLOW', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(115, 'CORE_CHANNEL_REGS', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(116, 'WINDOW_CHANNEL_REGS', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(117, 'CURSOR_CHANNEL_REGS', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(118, 'HEAD_REGS', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(119, 'GSP_RPC_TIMEOUT', 'RESET_GPU', 'INVESTIGATE_SW', 'GSP firmware RPC timed out'),
    X(120, 'GSP_ERROR', 'RESET_GPU', 'INVESTIGATE_SW', 'GSP firmware error'),
    X(121, 'C2C_ERROR', 'IGNORE', 'CONTACT_SUPPORT', 'chip-to-chip (C2C) link error'),
    X(122, 'SPI_PMU_RPC_READ_FAIL', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(123, 'SPI_PMU_RPC_WRITE_FAIL', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(124, 'SPI_PMU_RPC_ERASE_FAIL', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(125, 'INFOROM_FS_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(126, 'ROBUST_CHANNEL_CE10_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 10 fault'),
    X(127, 'ROBUST_CHANNEL_CE11_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 11 fault'),
    X(128, 'ROBUST_CHANNEL_CE12_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 12 fault'),
    X(129, 'ROBUST_CHANNEL_CE13_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 13 fault'),
    X(130, 'ROBUST_CHANNEL_CE14_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 14 fault'),
    X(131, 'ROBUST_CHANNEL_CE15_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 15 fault'),
    X(132, 'ROBUST_CHANNEL_CE16_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 16 fault'),
    X(133, 'ROBUST_CHANNEL_CE17_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 17 fault'),
    X(134, 'ROBUST_CHANNEL_CE18_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 18 fault'),
    X(135, 'ROBUST_CHANNEL_CE19_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'copy engine 19 fault'),
    X(136, 'ALI_TRAINING_FAIL', 'RESET_GPU', 'INVESTIGATE_LINK_SI', 'NVLink training failed'),
    X(137, 'NVLINK_PRIV_ERR', 'IGNORE', 'XID_137_FLOW', 'NVLink privilege error (illegal peer access, usually an application bug)'),
    X(138, 'ROBUST_CHANNEL_DLA_ERROR', 'CONTACT_SUPPORT', '', 'not emitted by current drivers'),
    X(139, 'ROBUST_CHANNEL_OFA1_ERROR', 'RESTART_APP', 'CONTACT_SUPPORT', 'optical flow accelerator 1 fault'),
    X(140, 'UNRECOVERABLE_ECC_ERROR_ESCAPE', 'RESET_GPU', 'CONTACT_SUPPORT', 'uncorrectable ECC error escaped the retirement machinery'),
    X(141, 'ROBUST_CHANNEL_FAST_PATH_ERROR', 'IGNORE', 'CONTACT_SUPPORT', 'CUDA fast path error'),
    X(142, 'ROBUST_CHANNEL_NVENC3_ERROR', 'CONTACT_SUPPORT', '', 'video encoder 3 fault'),
    X(143, 'GPU_INIT_ERROR', 'RESET_GPU', 'CONTACT_SUPPORT', 'GPU failed to initialise'),
    X(144, 'NVLINK_SAW_ERROR', 'WORKFLOW_NVLINK5_ERR', 'WORKFLOW_NVLINK5_ERR', 'NVLink5 SAW unit error'),
    X(145, 'NVLINK_RLW_ERROR', 'WORKFLOW_NVLINK5_ERR', 'WORKFLOW_NVLINK5_ERR', 'NVLink5 RLW unit error'),
    X(146, 'NVLINK_TLW_ERROR', 'WORKFLOW_NVLINK5_ERR', 'WORKFLOW_NVLINK5_ERR', 'NVLink5 TLW unit error'),
    X(147, 'NVLINK_TREX_ERROR', 'WORKFLOW_NVLINK5_ERR', 'WORKFLOW_NVLINK5_ERR', 'NVLink5 TREX unit error'),
    X(148, 'NVLINK_NVLPW_CTRL_ERROR', 'WORKFLOW_NVLINK5_ERR', 'WORKFLOW_NVLINK5_ERR', 'NVLink5 NVLPW control error'),
    X(149, 'NVLINK_NETIR_ERROR', 'WORKFLOW_NVLINK5_ERR', 'WORKFLOW_NVLINK5_ERR', 'NVLink5 NETIR error'),
    X(150, 'NVLINK_MSE_ERROR', 'WORKFLOW_NVLINK5_ERR', 'WORKFLOW_NVLINK5_ERR', 'NVLink5 MSE error'),
    X(151, 'ROBUST_CHANNEL_KEY_ROTATION_ERROR', 'RESTART_VM', 'CONTACT_SUPPORT', 'confidential-computing key rotation failed'),
    X(152, 'ROBUST_CHANNEL_DLA_SMMU_ERROR', 'IGNORE', 'CONTACT_SUPPORT', 'DLA SMMU error'),
    X(153, 'ROBUST_CHANNEL_DLA_TIMEOUT', 'IGNORE', 'CONTACT_SUPPORT', 'DLA timed out'),
    X(154, 'GPU_RECOVERY_ACTION_CHANGED', 'XID_154', 'INFORMATIONAL', "driver changed the GPU's recovery action"),
    X(155, 'NVLINK_SW_DEFINED_ERROR', 'RESET_GPU', 'INVESTIGATE_SW_USER', 'NVLink software-defined error'),
    X(156, 'RESOURCE_RETIREMENT_EVENT', 'RESET_GPU', 'IGNORE', 'a memory resource was retired'),
    X(157, 'RESOURCE_RETIREMENT_FAILURE', 'IGNORE', 'CONTACT_SUPPORT', 'a memory resource could not be retired'),
    X(158, 'GPU_FATAL_TIMEOUT', 'RESET_GPU', 'CONTACT_SUPPORT', 'GPU fatal timeout'),
    X(159, 'ROBUST_CHANNEL_CHI_NON_DATA_ERROR', 'CHECK_UVM', 'SYMPATHETIC_REPORT_SOLO', 'C2C non-data error'),
    X(160, 'CHANNEL_RETIREMENT_EVENT', 'IGNORE', 'INVESTIGATE_SW', 'a channel was retired'),
    X(161, 'CHANNEL_RETIREMENT_FAILURE', 'IGNORE', 'INVESTIGATE_SW', 'a channel could not be retired'),
    X(162, 'PSHC_REENGAGED', '', '', 'power-smoothing circuitry re-engaged'),
    X(163, 'PSHC_DISENGAGED', '', '', 'power-smoothing circuitry disengaged'),
    X(164, 'PSHC_LOW_LIFETIME', '', '', 'power-smoothing circuitry near the end of its lifetime'),
    X(165, 'PSHC_ZERO_LIFETIME', '', '', 'power-smoothing circuitry lifetime exhausted'),
    X(166, 'NVLINK_SECURE_CRYPTO_ERR', '', '', 'unencrypted traffic before the NVLink was set up for confidential computing'),
    X(167, 'PCIE_FATAL_TIMEOUT', '', '', 'PCIe fatal timeout'),
    X(168, 'REDUCED_GPU_MEMORY_CAPACITY', '', '', 'reduced usable GPU memory (errors in the write-protected region)'),
    X(169, 'SEC2_HALT_ERROR', '', '', 'internal micro-controller (SEC2) halted'),
    X(170, 'NVLINK_SECURE_OTHER', '', '', 'unexpected interrupt in confidential-computing mode'),
    X(171, 'UNCORRECTABLE_DRAM_ERROR', '', '', 'detail of an uncorrectable DRAM error (companion of Xid 48)'),
    X(172, 'UNCORRECTABLE_SRAM_ERROR', '', '', 'detail of an uncorrectable SRAM error (companion of Xid 48)'),
)

XIDS: Mapping[int, XidEntry] = MappingProxyType({e.code: e for e in _TABLE})


def lookup(code: int) -> XidEntry | None:
    """The catalog entry for an Xid code, or None when the pinned revision does not list it."""
    return XIDS.get(code)
