module github.com/tickbox-fw/tickbox

go 1.26
