module example.com/maintenance-proxy

go 1.22
