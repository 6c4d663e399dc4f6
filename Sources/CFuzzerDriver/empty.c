// The declaration in include/CFuzzerDriver.h is all this target holds.
