// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: imports a symbol nothing exports (unresolved finding). */
#include <linux/module.h>
extern int kms_nowhere(void);
static int __init kmc_undef_init(void) { return kms_nowhere(); }
module_init(kmc_undef_init);
MODULE_LICENSE("GPL");
