// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: uses kms_a_ns (namespace KMSIM_NS) without MODULE_IMPORT_NS (namespace finding). */
#include <linux/module.h>
extern int kms_a_ns(int x);
static int __init kmc_ns_init(void) { return kms_a_ns(2); }
module_init(kmc_ns_init);
MODULE_LICENSE("GPL");
