"""eBPF instruction encoding numbers (opcode fields, pseudo source registers), without the
codec: what reads or writes raw instructions imports them from here (``dispatcher.obj.insn``
re-exports them with its instruction type, constructors and disassembler)."""

from __future__ import annotations

INSN_SIZE = 8

# --- instruction classes (code & 0x07)
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07

# --- size (code & 0x18) for LD/LDX/ST/STX
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18

# --- mode (code & 0xe0) for LD/LDX/ST/STX
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_MEMSX = 0x80
BPF_ATOMIC = 0xC0

# --- source operand (code & 0x08) for ALU/JMP
BPF_K = 0x00
BPF_X = 0x08

# --- ALU operations (code & 0xf0)
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0
BPF_MOV = 0xB0
BPF_ARSH = 0xC0
BPF_END = 0xD0

# byte-order direction of BPF_END in class ALU (shares the bit with BPF_X)
BPF_TO_LE = 0x00
BPF_TO_BE = 0x08

# --- jump operations (code & 0xf0)
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_JSGT = 0x60
BPF_JSGE = 0x70
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xA0
BPF_JLE = 0xB0
BPF_JSLT = 0xC0
BPF_JSLE = 0xD0

# --- atomic operations (imm of a BPF_STX | BPF_ATOMIC instruction)
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH
BPF_LOAD_ACQ = 0x100
BPF_STORE_REL = 0x110

# --- src_reg of an ld_imm64
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6

# --- src_reg of a call
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

# --- frequently tested full opcodes
OP_LD_IMM64 = BPF_LD | BPF_DW | BPF_IMM  # 0x18
OP_CALL = BPF_JMP | BPF_CALL  # 0x85
OP_CALLX = BPF_JMP | BPF_CALL | BPF_X  # 0x8d
OP_EXIT = BPF_JMP | BPF_EXIT  # 0x95
OP_JA = BPF_JMP | BPF_JA  # 0x05
OP_GOTOL = BPF_JMP32 | BPF_JA  # 0x06
