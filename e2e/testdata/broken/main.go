// Package main deliberately does not compile: flash_test.go adds it to the
// image through TICKBOX_EXTRA_PACKAGES to check how flash.sh handles a
// failed build.
package main

func main() {
	var n int = "not a number"
	_ = n
}
