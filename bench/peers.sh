# bench/peers.sh — sourced by bench/run.sh: configurations of the peers that
# run the same two-hop path as two Trellis sidecars, with mesh certificates.
#
#   load ──► A (plaintext, loopback) ══ TLS 1.3, A's client cert ══► B (verifies it) ──► app
#
# Both hops keep connections alive; nothing logs. Each function writes one
# config file and prints its path. Certificates: DIR/NAME.{crt,key,pem} and
# DIR/root.pem, written by `benchtool certs` from the Trellis CA.

# haproxy_config NAME DIR NBTHREAD A_H1 A_H2 A_G B_H1 B_H2 B_G APP GRPC_APP:
# the config of HAProxy A (NAME=haproxy-a) or B (NAME=haproxy-b). A listens
# on A_H1 (HTTP/1.1), A_H2 and A_G (h2c, prior knowledge; A_G for gRPC) and
# forwards to B_H1 / B_H2 / B_G over TLS 1.3 with its client certificate,
# ALPN http/1.1 or h2; B requires and verifies the client certificate against
# the Trellis root and forwards plaintext HTTP/1.1 or h2c to APP (GRPC_APP
# for B_G).
haproxy_config() {
	local name=$1 dir=$2 nbthread=$3 a_h1=$4 a_h2=$5 a_g=$6 b_h1=$7 b_h2=$8 b_g=$9 app=${10} grpc_app=${11}
	local cfg=$dir/$name.cfg
	{
		cat <<EOF
global
    nbthread $nbthread
    maxconn 4000
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
EOF
		if [[ $name == haproxy-a ]]; then
			cat <<EOF

frontend h1
    bind 127.0.0.1:$a_h1
    default_backend to_b_h1

frontend h2
    bind 127.0.0.1:$a_h2 proto h2
    default_backend to_b_h2

backend to_b_h1
    server b 127.0.0.1:$b_h1 ssl crt $dir/haproxy-a.pem ca-file $dir/root.pem verify required alpn http/1.1

backend to_b_h2
    server b 127.0.0.1:$b_h2 ssl crt $dir/haproxy-a.pem ca-file $dir/root.pem verify required alpn h2

frontend grpc
    bind 127.0.0.1:$a_g proto h2
    default_backend to_b_grpc

backend to_b_grpc
    server b 127.0.0.1:$b_g ssl crt $dir/haproxy-a.pem ca-file $dir/root.pem verify required alpn h2
EOF
		else
			cat <<EOF

frontend h1
    bind 127.0.0.1:$b_h1 ssl crt $dir/haproxy-b.pem ca-file $dir/root.pem verify required alpn http/1.1
    default_backend app_h1

frontend h2
    bind 127.0.0.1:$b_h2 ssl crt $dir/haproxy-b.pem ca-file $dir/root.pem verify required alpn h2
    default_backend app_h2

backend app_h1
    server app $app

backend app_h2
    server app $app proto h2

frontend grpc
    bind 127.0.0.1:$b_g ssl crt $dir/haproxy-b.pem ca-file $dir/root.pem verify required alpn h2
    default_backend app_grpc

backend app_grpc
    server app $grpc_app proto h2
EOF
		fi
	} >"$cfg"
	echo "$cfg"
}

# nginx_config NAME DIR A B APP WORKERS: the config of nginx A (NAME=nginx-a:
# listens plaintext on A, proxies over TLS 1.3 with its client certificate to
# B through a keep-alive pool) or B (NAME=nginx-b: TLS 1.3 on B,
# ssl_verify_client on against the Trellis root, keep-alive pool to APP).
# nginx A does not verify B's certificate (proxy_ssl_verify off): nginx
# checks a server certificate's DNS name or IP, and mesh SVIDs carry only a
# SPIFFE URI. The client certificate is verified (by B) as on the other paths.
nginx_config() {
	local name=$1 dir=$2 a=$3 b=$4 app=$5 workers=$6
	local cfg=$dir/$name.conf
	{
		cat <<EOF
daemon off;
master_process on;
worker_processes $workers;
pid $dir/$name.pid;
error_log $dir/$name.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/$name-tmp;
    proxy_temp_path $dir/$name-tmp;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
EOF
		if [[ $name == nginx-a ]]; then
			cat <<EOF
    upstream b { server 127.0.0.1:$b; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$a;
        location / {
            proxy_pass https://b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_certificate $dir/nginx-a.crt;
            proxy_ssl_certificate_key $dir/nginx-a.key;
            proxy_ssl_trusted_certificate $dir/root.pem;
            proxy_ssl_verify off;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF
		else
			cat <<EOF
    upstream app { server $app; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$b ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate $dir/nginx-b.crt;
        ssl_certificate_key $dir/nginx-b.key;
        ssl_client_certificate $dir/root.pem;
        ssl_verify_client on;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
		fi
	} >"$cfg"
	mkdir -p "$dir/$name-tmp"
	echo "$cfg"
}
