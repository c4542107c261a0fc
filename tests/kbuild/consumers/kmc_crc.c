// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: built against a Module.symvers whose CRC for kms_a_plain differs (crc finding). */
#include <linux/module.h>
extern int kms_a_plain(int x);
static int __init kmc_crc_init(void) { return kms_a_plain(-3); }
module_init(kmc_crc_init);
MODULE_LICENSE("GPL");
