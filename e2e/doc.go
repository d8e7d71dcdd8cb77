// Package e2e holds the end-to-end tests of the tickbox image: they build it
// with flash.sh, boot it under qemu and drive it the way a user would,
// through the gokrazy web UI and breakglass ssh. The tests of flash.sh's
// refusals (bad flags, busy ports, bad devices, failed builds) live here too.
//
// Run them with ./test.sh, which installs qemu, ssh and e2fsprogs; -short
// skips the qemu boot.
package e2e
