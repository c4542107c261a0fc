// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: exports kms_a_counter, which kms_a exports too (duplicate-export finding). */
#include <linux/module.h>
int kms_a_counter;
EXPORT_SYMBOL(kms_a_counter);
int kmc_dup_own(void) { return kms_a_counter; }
EXPORT_SYMBOL_GPL(kmc_dup_own);
MODULE_LICENSE("GPL");
