module gokrazy/build/tickbox

go 1.26.0

require github.com/tickbox-fw/tickbox v0.0.0-00010101000000-000000000000

// The tickbox packages are built from this checkout: the path is relative so
// that the image builds from any clone location.
replace github.com/tickbox-fw/tickbox => ../../../../..
