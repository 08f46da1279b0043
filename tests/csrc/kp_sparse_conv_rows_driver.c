/*
 * kp_sparse_conv_driver.c driving kp_sparse_convolve_rows_s8 (the block-of-rows variant).
 */
#define KP_DRIVER_ROWS 1
#define KP_DRIVER_NAME "kp_sparse_conv_rows_driver"
#include "kp_sparse_conv_driver.c"
