// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a proprietary module using kms_a's GPL-only export (gpl-only finding). */
#include <linux/module.h>
extern int kms_a_gpl(int x);
static int __init kmc_gpl_init(void) { return kms_a_gpl(0); }
module_init(kmc_gpl_init);
MODULE_LICENSE("Proprietary");
