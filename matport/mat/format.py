"""The MAT-file format's constants, one home for the readers and the writers (as scipy's
``io/matlab/_mio5_params.py``): v5 data-element types, array classes and flags, the v7.3
attributes' codes, and the MCOS subsystem's markers. See ``shared/docs/mat-format.md``."""

from __future__ import annotations

# -- the v7 container (MAT 5 layout) -------------------------------------------------------------
HEADER_BYTES = 128
ENDIAN_OFFSET = 126  # "IM" (little-endian) or "MI" (big-endian)
HEADER_TEXT_BYTES = 116  # the text; then subsystem offset (8 bytes), version, endian mark
SUBSYSTEM_STREAM_HEAD = b"\x00\x01IM\x00\x00\x00\x00"  # the subsystem's own small MAT stream

# Data element types (miINT8 ...)
MI_INT8, MI_UINT8, MI_INT16, MI_UINT16, MI_INT32, MI_UINT32 = 1, 2, 3, 4, 5, 6
MI_SINGLE, MI_DOUBLE, MI_INT64, MI_UINT64 = 7, 9, 12, 13
MI_MATRIX, MI_COMPRESSED, MI_UTF8, MI_UTF16, MI_UTF32 = 14, 15, 16, 17, 18

MI_DTYPES = {  # element type -> numpy dtype code
    MI_INT8: "i1", MI_UINT8: "u1", MI_INT16: "i2", MI_UINT16: "u2", MI_INT32: "i4",
    MI_UINT32: "u4", MI_SINGLE: "f4", MI_DOUBLE: "f8", MI_INT64: "i8", MI_UINT64: "u8",
    MI_UTF8: "u1", MI_UTF16: "u2", MI_UTF32: "u4",
}

# Array classes (mxCELL_CLASS ...)
MX_CELL, MX_STRUCT, MX_OBJECT, MX_CHAR, MX_SPARSE = 1, 2, 3, 4, 5
MX_DOUBLE, MX_SINGLE, MX_INT8, MX_UINT8, MX_INT16 = 6, 7, 8, 9, 10
MX_UINT16, MX_INT32, MX_UINT32, MX_INT64, MX_UINT64 = 11, 12, 13, 14, 15
MX_FUNCTION, MX_OPAQUE = 16, 17

MX_NUMERIC = {  # numeric array class -> numpy dtype code
    MX_DOUBLE: "f8", MX_SINGLE: "f4", MX_INT8: "i1", MX_UINT8: "u1", MX_INT16: "i2",
    MX_UINT16: "u2", MX_INT32: "i4", MX_UINT32: "u4", MX_INT64: "i8", MX_UINT64: "u8",
}
# numpy dtype code -> (array class, element type) a writer stores it as; logical is uint8 + flag
NUMERIC_TYPES: dict[str, tuple[int, int]] = {
    **{code: (mx, next(mi for mi, c in MI_DTYPES.items() if c == code))
       for mx, code in MX_NUMERIC.items()},
    "b1": (MX_UINT8, MI_UINT8),
}
COMPLEX_PARTS = {"c16": "f8", "c8": "f4"}  # complex dtype code -> dtype code of each part

# Array flags (in the first word of the array-flags element, above the class byte)
FLAG_COMPLEX, FLAG_GLOBAL, FLAG_LOGICAL = 0x0800, 0x0400, 0x0200
MAX_NAME = 63  # MATLAB's namelengthmax: variable and field names
MAX_DIMS = 64  # more dimensions than numpy supports is not a file MATLAB wrote
MAX_ELEMENTS = 2**48 - 1  # MATLAB's most elements in one array (64-bit)
# zlib cannot inflate by more than ~1032:1; anything beyond that is not a zlib stream MATLAB wrote.
INFLATE_RATIO = 1100

# -- the v7.3 container (HDF5 behind a user block) -----------------------------------------------
V73_MARK = b"MATLAB 7.3 MAT-file"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
USER_BLOCK = 512
# MATLAB_object_decode: 1 function handle, 2 old-style class object, 3 class object (MCOS etc.)
DECODE_FUNCTION, DECODE_LEGACY, DECODE_OBJECT = 1, 2, 3
MATLAB_CLASS = {  # numpy dtype code -> MATLAB_class attribute (complex: compound real/imag)
    "f8": "double", "f4": "single", "i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16",
    "i4": "int32", "u4": "uint32", "i8": "int64", "u8": "uint64", "b1": "logical",
    "c16": "double", "c8": "single",
}
NUMERIC_CLASSES = {  # MATLAB_class attribute -> numpy dtype code
    name: ("?" if code == "b1" else code) for code, name in MATLAB_CLASS.items()
    if code not in COMPLEX_PARTS
}

# -- the MCOS subsystem -------------------------------------------------------------------------
MCOS_TYPE_SYSTEM = "MCOS"  # also the subsystem field and v7.3 dataset that hold FileWrapper__
FILEWRAPPER = "FileWrapper__"
FILEWRAPPER_VERSIONS = (2, 3, 4)
FILEWRAPPER_VERSION = 4  # the version the writer lays out
REFERENCE_MAGIC = 0xDD000000  # first word of an object reference
ENUMERATION_TAG = "EnumerationInstanceTag"  # the field that marks an enumeration's struct
# the type of a property record's value: a name index, a property cell, an immediate integer
PROPERTY_NAME, PROPERTY_CELL, PROPERTY_INTEGER = 0, 1, 2
