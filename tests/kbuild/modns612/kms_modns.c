// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture (6.12): uses anon_inode_make_secure_inode, which Debian's 6.12 exports in the
 * namespace "module:kvm". Before 6.16 that is an ordinary namespace: it must be imported. */
#include <linux/module.h>
#include <linux/err.h>
#include <linux/fs.h>

static int __init kms_modns_init(void)
{
	return IS_ERR(anon_inode_make_secure_inode(NULL, "kms", NULL)) ? -EINVAL : 0;
}
module_init(kms_modns_init);
MODULE_LICENSE("GPL");
#ifndef KMS_NO_IMPORT
MODULE_IMPORT_NS(module:kvm);
#endif
