// libffi for Swift 6: its ffi_type globals are mutable C globals, which strict concurrency
// refuses to touch; these accessors hand out their addresses instead (DESIGN.md rule 12).
#include <ffi.h>

static inline ffi_type *capstan_ffi_type_void(void) { return &ffi_type_void; }
static inline ffi_type *capstan_ffi_type_sint32(void) { return &ffi_type_sint32; }
static inline ffi_type *capstan_ffi_type_sint64(void) { return &ffi_type_sint64; }
static inline ffi_type *capstan_ffi_type_double(void) { return &ffi_type_double; }
static inline ffi_type *capstan_ffi_type_pointer(void) { return &ffi_type_pointer; }
