module svcconf/ci/kit/runc-wrapper

go 1.24
