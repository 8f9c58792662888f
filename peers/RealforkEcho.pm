# The echo loop and the command line shared by the Net::Server peers
# (echo_net_server_fork.pl, echo_net_server_prefork.pl).
package RealforkEcho;
use strict;
use warnings;

# <port> [buffer_size] [workers]: checked as c/echo_mpserv_fixed checks them.
sub args {
    my ($usage, $max_args) = @_;
    if (@ARGV < 1 || @ARGV > $max_args || grep { !/^\d+$/ } @ARGV) {
        print "Usage : $0 $usage\n";
        exit 1;
    }
    my ($port, $buf_size, $workers) = ($ARGV[0], $ARGV[1] // 30, $ARGV[2] // 4);
    fail("buffer_size must be from 1 to 67108864") if $buf_size < 1 || $buf_size > 64 << 20;
    fail("workers must be from 1 to 1024") if $workers < 1 || $workers > 1024;
    return ($port, $buf_size, $workers);
}

sub fail {
    print STDERR "$_[0]\n";
    exit 1;
}

# Net::Server's options common to both: loopback (a benchmark peer), the C
# server's backlog, no log lines per connection, in the foreground, as the
# user and group it was started as (said, so that Net::Server does not log
# that it defaults to them).
sub options {
    my ($port) = @_;
    return (port => "127.0.0.1:$port", ipv => 4, listen => 128, log_level => 1, background => undef,
        user => $>, group => (split ' ', $))[0]);
}

# read, then write all of it, until EOF or an error.
sub echo {
    my ($sock, $buf_size) = @_;
    while (1) {
        my $n = sysread($sock, my $data, $buf_size);
        next if !defined $n && $!{EINTR};
        last if !$n;
        my $off = 0;
        while ($off < $n) {
            my $w = syswrite($sock, $data, $n - $off, $off);
            next if !defined $w && $!{EINTR};
            return if !defined $w;
            $off += $w;
        }
    }
}

1;
