// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: imports namespace KMSIM_NS but uses nothing from it (namespace-unused warning). */
#include <linux/module.h>
extern int kms_a_counter;
static int __init kmc_unused_ns_init(void) { return kms_a_counter; }
module_init(kmc_unused_ns_init);
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(KMSIM_NS);
