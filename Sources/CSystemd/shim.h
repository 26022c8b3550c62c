#include <systemd/sd-daemon.h>
// The daemon's other OS interface: glibc's malloc_trim, to hand freed heap pages back.
#include <malloc.h>
