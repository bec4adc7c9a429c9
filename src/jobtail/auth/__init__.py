"""Request authentication: verification of Huawei Cloud SDK AK/SK signatures (`jobtail.auth.signing`)."""
