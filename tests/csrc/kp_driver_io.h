/*
 * What the sanitizer-built test drivers share: reading a case's arrays from stdin at
 * exactly their size (an empty one is NULL, so any read of it trips AddressSanitizer) and
 * failing loudly. Define KP_DRIVER_NAME before including it.
 */
#ifndef KP_DRIVER_IO_H
#define KP_DRIVER_IO_H

#include <stdio.h>
#include <stdlib.h>

static void die(const char *why)
{
    fprintf(stderr, "%s: %s\n", KP_DRIVER_NAME, why);
    exit(2);
}

static void *read_array(size_t bytes)
{
    void *p;
    if (bytes == 0) {
        return NULL;
    }
    p = malloc(bytes);
    if (p == NULL) {
        die("out of memory");
    }
    if (fread(p, 1, bytes, stdin) != bytes) {
        die("short read");
    }
    return p;
}

#endif /* KP_DRIVER_IO_H */
